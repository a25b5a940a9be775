"""Drive one recipe from data to a published version, and ``all``: every missing default model, fastest first."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from app.tasks.registry import load_model_config
from app.repository.training import clear_status, write_status
from app.training.card import RunClock, build_card, write_card
from app.training.progress import set_reporter
from app.training.recipe import Profile
from app.training.recipes import RECIPES
from app.training.reproducibility import DEFAULT_SEED, seed_everything
from app.training.versioning import CONFIG_FILE, ensure_config, has_version, next_version, publish, staging_dir

log = logging.getLogger("app.training")


def run_recipe(
    name: str,
    *,
    profile: Profile = "full",
    data_path: Path | None = None,
    repository: Path = Path("models"),
    seed: int = DEFAULT_SEED,
) -> Path:
    """Train, export, check, evaluate and publish one model; returns the new version folder."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    clock = RunClock()
    recipe = RECIPES[name](profile=profile, data_path=data_path)
    repository = Path(repository)
    model_dir = repository / recipe.name
    log.info("%s: recipe %s, profile %s, repository %s", recipe.name, name, profile, repository)

    seed_everything(seed, recipe.threads)
    data = recipe.load_data()
    log.info("%s: data %s, splits %s", recipe.name, data.location, data.splits)
    model = recipe.build_model()
    parameter_count = sum(p.numel() for p in model.parameters())
    started, cpu_started = time.perf_counter(), time.process_time()
    training = recipe.train(model)
    training_seconds = time.perf_counter() - started
    # CPU time beside wall time: on a shared machine the wall clock says more about the neighbours.
    training["cpu_seconds"] = round(time.process_time() - cpu_started, 1)
    model.eval()
    log.info("%s: trained in %.0f s", recipe.name, training_seconds)

    # The server reads the model's config.yaml; evaluation uses the same parameters it will.
    ensure_config(model_dir, recipe.model_config())
    parameters = load_model_config(model_dir / CONFIG_FILE, recipe.name).parameters
    with staging_dir(repository, recipe.name) as staging:
        exported = recipe.export(model, staging)
        assets = recipe.write_assets(staging)
        evaluation = recipe.evaluate_onnx(staging, parameters)
        log.info("%s: ONNX metrics %s; baselines %s", recipe.name, evaluation.metrics, evaluation.baselines)
        version = next_version(model_dir)
        card = build_card(
            recipe, version=version, data=data, exported=exported, evaluation=evaluation, training=training,
            training_seconds=training_seconds, parameter_count=parameter_count, seed=seed, assets=assets,
            clock=clock,
        )  # fmt: skip
        write_card(staging, card)
        version_dir = publish(staging, version)
    log.info("%s: published version %d at %s", recipe.name, version, version_dir)
    return version_dir


def default_order() -> list[str]:
    """Recipes fastest first, so the first model answers as early as possible."""
    return sorted(RECIPES, key=lambda name: (RECIPES[name].expected_minutes, name))


def run_missing(repository: Path = Path("models"), profile: Profile = "full") -> dict[str, str]:
    """Train every default model that has no version yet, fastest first. One failure does not stop the rest.
    Returns model name -> "published <path>" / "present" / "failed: <reason>".

    Each model waiting or in training has a progress report (``app.repository.training``) that a
    server polling the repository shows as the model's PENDING state."""
    repository = Path(repository)
    outcome: dict[str, str] = {}
    missing = [name for name in default_order() if not has_version(repository, RECIPES[name].name)]
    for name in default_order():
        if name not in missing:
            outcome[RECIPES[name].name] = "present"
    for position, name in enumerate(missing):
        for later in missing[position + 1:]:
            write_status(repository / RECIPES[later].name, "queued", message=RECIPES[name].name)
        model_dir = repository / RECIPES[name].name
        write_status(model_dir, "training", phase="loading data")
        set_reporter(lambda desc, step, total, eta, d=model_dir: write_status(
            d, "training", phase=desc, step=step, total=total, eta_seconds=eta))  # fmt: skip
        try:
            outcome[model_dir.name] = f"published {run_recipe(name, profile=profile, repository=repository)}"
            clear_status(model_dir)  # after publishing: the version now speaks for the model
        except Exception as exc:  # keep going: the other models are still worth serving
            log.exception("%s: training failed", model_dir.name)
            outcome[model_dir.name] = f"failed: {exc}"
            write_status(model_dir, "failed", message=str(exc) or "see the trainer's log")  # shown to clients
        finally:
            set_reporter(None)
    return outcome
