"""Model repository: configs, version policy, isolation of broken models, reload and unload."""

import asyncio

import numpy as np
import pytest

from app.config import Settings
from app.errors import InvalidInput, ModelNotReady, NotFound
from app.metrics import Metrics
from app.protocol.model_config import ConfigError, load_config
from app.repository.manager import ModelRepository
from testkit.models import affine_model, matmul_chain_model, write_model


def repo_for(path, **kw) -> ModelRepository:
    return ModelRepository(path, Settings(model_repository=path, **kw), Metrics())


def test_config_error_names_file_and_field(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("max_batch_size: -3\ninstance_group: {count: 0}\nbogus: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg, "m")
    msg = err.value.message
    assert str(cfg) in msg
    assert "field 'max_batch_size'" in msg and "field 'instance_group.count'" in msg and "field 'bogus'" in msg


def test_config_name_must_match_folder(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("name: other\n")
    with pytest.raises(ConfigError, match="does not match its folder 'm'"):
        load_config(cfg, "m")


@pytest.mark.parametrize(
    "policy, expected",
    [({}, [3]), ({"latest": 2}, [2, 3]), ({"all": True}, [1, 2, 3]), ({"specific": [1, 3]}, [1, 3])],
)
async def test_version_policy(tmp_path, policy, expected):
    write_model(tmp_path, "m", affine_model(), {"max_batch_size": 4, "version_policy": policy}, versions=(1, 2, 3))
    repo = repo_for(tmp_path)
    await repo.load_all()
    assert sorted(repo.models["m"].versions) == expected
    assert repo.get("m").version == expected[-1]  # default: newest ready
    await repo.close()


async def test_broken_models_are_isolated(tmp_path):
    write_model(tmp_path, "good", affine_model(), {"max_batch_size": 4})
    write_model(tmp_path, "corrupt", b"not an onnx file", {"max_batch_size": 4})
    write_model(tmp_path, "missing", None, {"max_batch_size": 4})  # version folder without model.onnx
    write_model(tmp_path, "badconfig", affine_model(), {"max_batch_size": "lots"})
    write_model(tmp_path, "mismatch", affine_model(), {"max_batch_size": 4, "inputs": [
        {"name": "x", "datatype": "INT64", "shape": [4]}]})  # fmt: skip
    repo = repo_for(tmp_path)
    await repo.load_all()
    states = {(r["name"], r["state"]): r.get("reason", "") for r in repo.index()}
    assert ("good", "READY") in states
    assert "INVALID_PROTOBUF" in states[("corrupt", "UNAVAILABLE")]
    assert "model.onnx is missing" in states[("missing", "UNAVAILABLE")]
    assert "field 'max_batch_size'" in states[("badconfig", "UNAVAILABLE")]
    assert "INT64 but the graph says FP32" in states[("mismatch", "UNAVAILABLE")]
    with pytest.raises(ModelNotReady, match="INVALID_PROTOBUF"):
        await repo.get("corrupt").infer({"x": np.ones((1, 4), np.float32)})
    res = await repo.get("good").infer({"x": np.ones((1, 4), np.float32)})
    assert res.outputs["y"].tolist() == [[3.0] * 4]
    await repo.close()


async def test_new_version_is_loaded_beside_the_old_and_switched_atomically(tmp_path):
    write_model(tmp_path, "m", affine_model(bias=1.0), {"max_batch_size": 4})
    repo = repo_for(tmp_path)
    await repo.load_all()
    x = np.ones((1, 4), np.float32)
    stop = asyncio.Event()
    seen, failures = set(), []

    async def traffic():
        while not stop.is_set():
            try:
                mv = repo.get("m")
                res = await mv.infer({"x": x})
                seen.add(float(res.outputs["y"][0, 0]))
            except Exception as exc:  # noqa: BLE001 - any failure is what this test looks for
                failures.append(exc)
            await asyncio.sleep(0)

    clients = [asyncio.create_task(traffic()) for _ in range(8)]
    await asyncio.sleep(0.1)
    write_model(tmp_path, "m", affine_model(bias=5.0), {"max_batch_size": 4}, versions=(2,))
    await repo.load("m")
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*clients)
    assert failures == []
    assert seen == {3.0, 7.0}  # served v1 before, v2 after
    assert sorted(repo.models["m"].versions) == [2]  # latest-1 policy retired v1 after the switch
    await repo.close()


async def test_unload_and_lookup_errors(tmp_path):
    write_model(tmp_path, "m", affine_model(), {"max_batch_size": 4})
    repo = repo_for(tmp_path)
    await repo.load_all()
    with pytest.raises(NotFound, match="no version 9"):
        repo.get("m", "9")
    with pytest.raises(InvalidInput, match="positive integer"):
        repo.get("m", "latest")
    await repo.unload("m")
    with pytest.raises(NotFound):
        repo.get("m")
    with pytest.raises(InvalidInput, match="invalid model name"):
        await repo.load("../etc")
    await repo.close()


@pytest.mark.parametrize("name, config, versions, problem", [
    ("pending", {"max_batch_size": 4}, (), "no version folders"),  # still being trained
    ("broken", {"max_batch_size": "lots"}, (1,), "max_batch_size"),  # a bad config.yaml
])
async def test_model_problems_are_logged_once_per_change(tmp_path, caplog, name, config, versions, problem):
    """Poll mode reloads every few seconds: a problem is said when it appears, not on every poll."""
    write_model(tmp_path, name, affine_model(), config, versions=versions)
    repo = repo_for(tmp_path)
    with caplog.at_level("WARNING", logger="app.repository.manager"):
        for _ in range(3):
            await repo.load(name)
    said = [r for r in caplog.records if problem in r.getMessage()]
    assert len(said) == 1, said
    assert problem in repo.models[name].error  # the state itself stays visible
    await repo.close()


async def test_unload_drains_the_requests_it_accepted(tmp_path):
    """unload marked its versions UNLOADING before retiring them, and retiring drained only READY
    ones: the accepted requests still queued failed with 'was unloaded' (19 of 20 here)."""
    write_model(tmp_path, "slow", matmul_chain_model(width=1024, depth=16), {"max_batch_size": 1})
    repo = repo_for(tmp_path)
    await repo.load_all()
    mv = repo.get("slow")
    x = np.full((1, 1024), 0.1, np.float32)
    accepted = [asyncio.create_task(mv.infer({"x": x})) for _ in range(20)]
    await asyncio.sleep(0)  # every request is in the queue
    await repo.unload("slow")
    results = await asyncio.gather(*accepted, return_exceptions=True)
    assert [r for r in results if isinstance(r, Exception)] == []
    with pytest.raises(ModelNotReady, match="UNLOADING"):
        await mv.infer({"x": x})  # and nothing new was accepted
    await repo.close()


async def test_poll_retries_a_failed_version_only_once_its_files_change(tmp_path):
    """A version that fails to load is not loaded again on every poll scan (a model failing late,
    in warm-up, cost a whole load each time), only after its folder changed; the load API always retries."""
    write_model(tmp_path, "m", affine_model(), {"max_batch_size": 4})
    repo = repo_for(tmp_path)
    await repo.load_all()
    write_model(tmp_path, "m", b"\x00not an onnx file", {"max_batch_size": 4}, versions=(2,))
    await repo.load("m", retry_unchanged=False)
    failed = repo.models["m"].versions[2]
    await repo.load("m", retry_unchanged=False)
    assert repo.models["m"].versions[2] is failed  # not tried again
    await repo.load("m")
    assert repo.models["m"].versions[2] is not failed  # the load API tries again
    write_model(tmp_path, "m", affine_model(bias=5.0), {"max_batch_size": 4}, versions=(2,))
    await repo.load("m", retry_unchanged=False)
    assert repo.get("m").version == 2
    assert (await repo.get("m").infer({"x": np.ones((1, 4), np.float32)})).outputs["y"].tolist() == [[7.0] * 4]
    await repo.close()
