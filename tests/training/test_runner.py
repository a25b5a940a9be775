"""The framework on a tiny recipe: export, parity, card, versions, config, `all`."""

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from app.protocol.model_config import load_config
from app.repository.training import read_status
from app.training import __main__ as cli
from app.training import progress as progress_module
from app.training import runner
from app.training.export import export_onnx, ort_session, sha256_of
from app.training.parity import ParityError, check_parity
from app.training.recipe import DataSource, DataSummary, Evaluation, ExportResult, Recipe
from app.training.recipes import RECIPES
from app.training.versioning import publish, staging_dir, versions


class TinyRecipe(Recipe):
    name = "tiny-linear"
    task = "generic"
    expected_minutes = 0.01
    source = DataSource(name="random numbers", origin="numpy", licence="none")
    selection = "nothing to choose"

    def load_data(self):
        self.x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
        return DataSummary(location="memory", splits={"train": 16}, split_method="none")

    def build_model(self):
        return nn.Linear(4, 3)

    def train(self, model):
        return {"epochs": 0}

    def export(self, model, version_dir):
        path = Path(version_dir) / "model.onnx"
        graph = export_onnx(model, (torch.from_numpy(self.x[:2]),), path, ["x"], ["y"])
        return ExportResult({"model": graph}, [check_parity(model, path, {"x": self.x})])

    def write_assets(self, version_dir):
        return []

    def model_config(self):
        return {"task": "generic", "graphs": {"model": "model.onnx"}, "max_batch_size": 8, "parameters": {"answer": 42}}

    def evaluate_onnx(self, version_dir, parameters):
        assert parameters == {"answer": 42}  # evaluation sees the config the server will read
        (y,) = ort_session(Path(version_dir) / "model.onnx").run(None, {"x": self.x})
        return Evaluation(metrics={"mean_output": float(y.mean())})


@pytest.fixture()
def tiny(monkeypatch):
    monkeypatch.setitem(RECIPES, "tiny", TinyRecipe)
    return "tiny"


def test_run_recipe_publishes_numbered_versions_with_card_and_config(tiny, tmp_path):
    first = runner.run_recipe(tiny, repository=tmp_path)
    second = runner.run_recipe(tiny, repository=tmp_path)
    model_dir = tmp_path / "tiny-linear"
    assert (first.name, second.name) == ("1", "2") and versions(model_dir) == [1, 2]
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".staging")]
    card = json.loads((second / "card.json").read_text())
    assert card["version"] == 2 and card["model"] == "tiny-linear"
    assert card["graphs"]["model"]["sha256"] == sha256_of(second / "model.onnx")
    assert card["graphs"]["model"]["opset"] >= 17 and card["parameter_count"] == 15
    assert card["parity"][0]["max_abs_diff"] <= 1e-4 and card["parity"][0]["top_k_mismatched_rows"] == 0
    assert card["data"]["licence"] == "none" and card["training"]["seed"] == runner.DEFAULT_SEED
    assert load_config(model_dir / "config.yaml", "tiny-linear").parameters == {"answer": 42}
    assert sorted(p.name for p in second.iterdir()) == ["card.json", "model.onnx"]


def test_card_records_the_machine_libraries_and_wall_time(tiny, tmp_path):
    card = json.loads((runner.run_recipe(tiny, repository=tmp_path) / "card.json").read_text())
    env = card["environment"]
    assert env["cpu_count"] == os.cpu_count() and 1 <= env["usable_cores"] <= env["cpu_count"]
    assert env["cpu_model"] and env["os"].startswith("Linux")
    assert env["libraries"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert env["libraries"]["onnxruntime"] == ort.__version__ and env["libraries"]["numpy"] == np.__version__
    assert 0 < card["run"]["wall_seconds"] < 600 and card["run"]["wall_seconds"] >= card["training"]["seconds"]
    assert len(card["run"]["load_average_at_start"]) == 3 and len(card["run"]["load_average_at_end"]) == 3


def test_same_seed_gives_the_same_metrics(tiny, tmp_path):
    a = runner.run_recipe(tiny, repository=tmp_path / "a")
    b = runner.run_recipe(tiny, repository=tmp_path / "b")
    assert json.loads((a / "card.json").read_text())["metrics"] == json.loads((b / "card.json").read_text())["metrics"]


def test_an_existing_config_is_kept(tiny, tmp_path):
    model_dir = tmp_path / "tiny-linear"
    model_dir.mkdir()
    (model_dir / "config.yaml").write_text("task: generic\nmax_batch_size: 4\nparameters: {answer: 42}\n")
    runner.run_recipe(tiny, repository=tmp_path)
    assert "max_batch_size: 4" in (model_dir / "config.yaml").read_text()


def test_a_failed_run_leaves_no_version(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(TinyRecipe, "evaluate_onnx", lambda self, d, p: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        runner.run_recipe(tiny, repository=tmp_path)
    assert versions(tmp_path / "tiny-linear") == []
    assert [p.name for p in (tmp_path / "tiny-linear").iterdir()] == ["config.yaml"]


def test_all_trains_only_missing_models_fastest_first(tiny, tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(runner, "run_recipe", lambda name, **kw: trained.append(name) or Path("x"))
    (tmp_path / RECIPES["recommendation"].name / "1").mkdir(parents=True)
    outcome = runner.run_missing(tmp_path)
    assert outcome[RECIPES["recommendation"].name] == "present"
    assert "recommendation" not in trained and trained[0] == "tiny"
    minutes = [RECIPES[n].expected_minutes for n in trained]
    assert minutes == sorted(minutes)


def test_all_reports_each_models_progress_for_the_server(tiny, tmp_path, monkeypatch):
    """Waiting models are queued behind the one in training, which reports its steps; a published
    model's report is gone, a failed one says why (app.repository.training, read by the server)."""
    monkeypatch.setattr(progress_module, "REPORT_SECONDS", 0.0)
    order = [RECIPES[n].name for n in runner.default_order()]
    seen = {}

    def fake(name, repository, **kw):
        model = RECIPES[name].name
        for _ in progress_module.progress(range(3), desc=f"{model} epoch 1/1"):
            pass
        seen[model] = {m: read_status(repository / m) for m in order}
        if model == order[1]:
            raise RuntimeError("no data")
        (repository / model / "1").mkdir(parents=True)
        return repository / model / "1"

    monkeypatch.setattr(runner, "run_recipe", fake)
    runner.run_missing(tmp_path)
    first = seen[order[0]]
    assert first[order[0]].describe() == f"training: {order[0]} epoch 1/1, step 3/3, about 1 s left"
    assert [first[m].describe() for m in order[1:]] == [f"queued for training behind {order[0]}"] * (len(order) - 1)
    assert seen[order[1]][order[0]] is None  # published: the version speaks for it
    assert read_status(tmp_path / order[1]).describe() == "training failed: no data"
    assert all(read_status(tmp_path / m) is None for m in order[2:])


def test_all_keeps_going_after_a_failure_and_exits_nonzero(tiny, tmp_path, monkeypatch, capsys):
    def fake(name, **kw):
        if name == "tiny":
            raise RuntimeError("no data")
        return Path("ok")

    monkeypatch.setattr(runner, "run_recipe", fake)
    assert cli.main(["all", "--repository", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "tiny-linear: failed: no data" in out and "published ok" in out


def test_parity_failure_is_loud(tmp_path):
    torch.manual_seed(0)
    model, other = nn.Linear(4, 3), nn.Linear(4, 3)
    x = torch.randn(8, 4)
    path = tmp_path / "m.onnx"
    export_onnx(model, (x[:2],), path, ["x"], ["y"])
    assert check_parity(model, path, {"x": x.numpy()})["max_abs_diff"] < 1e-5
    with pytest.raises(ParityError, match="disagrees"):
        check_parity(other, path, {"x": x.numpy()})


def test_export_keeps_the_batch_axis_dynamic(tmp_path):
    path = tmp_path / "m.onnx"
    export_onnx(nn.Linear(4, 2), (torch.randn(2, 4),), path, ["x"], ["y"])
    session = ort_session(path)
    for batch in (1, 5):
        assert session.run(None, {"x": np.zeros((batch, 4), np.float32)})[0].shape == (batch, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no external data file


def test_publish_never_overwrites(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "keep").write_text("x")
    with staging_dir(tmp_path, "m") as staging:
        (staging / "f").write_text("y")
        with pytest.raises(OSError):
            publish(staging, 1)
    assert (tmp_path / "m" / "1" / "keep").exists()


def test_cli_list_names_every_recipe(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name, recipe in RECIPES.items():
        assert name in out and recipe.name in out
