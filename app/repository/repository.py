"""The model repository: which model versions exist on disk, which are loaded, and their state.

A new version is loaded and warmed *beside* the old one; only when it is READY does it
become the default and the versions the policy no longer selects are drained and unloaded,
so a request never lands on a half-loaded model and none fails during the switch.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.config import Settings
from app.errors import InvalidInput, ModelNotReady, NotFound
from app.metrics import Metrics
from app.repository.config import ConfigError, ModelConfig, load_config
from app.repository.model import ModelVersion, State
from app.runtime import workers

log = logging.getLogger(__name__)

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CONFIG_FILES = ("config.yaml", "config.yml")


def check_model_name(name: str) -> str:
    """Model names are plain folder names: no separators, no '..' (no path traversal)."""
    if not MODEL_NAME.match(name) or ".." in name:
        raise InvalidInput(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


@dataclass
class ModelEntry:
    name: str
    config: ModelConfig | None = None
    error: str = ""  # config-level problem (bad YAML, no versions)
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def set_error(self, message: str, level: int = logging.WARNING) -> None:
        """Record (or clear, with "") the model-level problem; log it only when it changes, since poll
        mode re-checks every few seconds (a fresh make serve once said the same line 786 times)."""
        if message and message != self.error:
            log.log(level, "model %s: %s", self.name, message)
        self.error = message

    def ready_versions(self) -> list[ModelVersion]:
        return [v for _, v in sorted(self.versions.items()) if v.state is State.READY]


class ModelRepository:
    def __init__(self, root: Path, settings: Settings, metrics: Metrics):
        self.root = root
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, ModelEntry] = {}
        self._poll_task: asyncio.Task | None = None

    # ------------------------------------------------------------------ discovery
    def _model_dir(self, name: str) -> Path:
        path = (self.root / check_model_name(name)).resolve()
        if path.parent != self.root.resolve():
            raise InvalidInput(f"invalid model name {name!r}")
        return path

    def discover(self) -> list[str]:
        if not self.root.is_dir():
            log.warning("model repository %s does not exist", self.root)
            return []
        return sorted(
            p.name for p in self.root.iterdir()
            if p.is_dir() and MODEL_NAME.match(p.name) and any((p / c).is_file() for c in CONFIG_FILES)
        )  # fmt: skip

    @staticmethod
    def _versions_on_disk(folder: Path) -> list[int]:
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0)

    # ------------------------------------------------------------------ load / unload
    async def load_all(self) -> None:
        await asyncio.gather(*(self.load(name) for name in self.discover()))

    async def load(self, name: str) -> ModelEntry:
        """(Re)load a model: read its config, load the versions its policy selects that are not
        loaded yet, then retire the versions it no longer selects. Errors stay on the model."""
        folder = self._model_dir(name)
        entry = self.models.setdefault(name, ModelEntry(name))
        async with entry.lock:
            cfg_path = next((folder / c for c in CONFIG_FILES if (folder / c).is_file()), None)
            if cfg_path is None:
                if not entry.versions:
                    self.models.pop(name, None)
                raise NotFound(f"model {name!r} has no config.yaml in the repository {self.root}")
            try:
                config = load_config(cfg_path, name)
            except ConfigError as exc:
                entry.set_error(exc.message, logging.ERROR)
                return entry
            config_changed = entry.config is not None and entry.config != config
            entry.config = config
            wanted = config.version_policy.select(self._versions_on_disk(folder))
            entry.set_error("" if wanted else f"no version folders (<n>/{next(iter(config.graphs.values()))}) in {folder}")
            # A changed config reloads every version (new batching or instances); otherwise only new ones.
            to_load = [v for v in wanted if config_changed or v not in entry.versions
                       or entry.versions[v].state is State.UNAVAILABLE]  # fmt: skip
            old = {v: entry.versions[v] for v in to_load if v in entry.versions}
            fresh = await asyncio.gather(*(self._load_version(name, config, folder, v) for v in to_load))
            for mv in fresh:
                prev = old.get(mv.version)
                if mv.state is not State.READY and prev is not None and prev.state is State.READY:
                    # A failed reload of a serving version keeps the old one serving.
                    entry.error = f"reload of version {mv.version} failed, still serving the old one: {mv.reason}"
                    old.pop(mv.version)
                    await mv.close()
                    continue
                entry.versions[mv.version] = mv  # atomic switch: requests resolve the newest READY version
            retire = [mv for v, mv in entry.versions.items() if v not in wanted]
            if retire and not any(entry.versions[v].state is State.READY for v in wanted if v in entry.versions):
                # None of the selected versions loaded (a bad or half-copied deploy): keep the
                # versions serving now rather than serve nothing; the next load/poll retries.
                keep = [mv for mv in retire if mv.state is State.READY]
                if keep:
                    entry.error = (f"version(s) {', '.join(str(v) for v in wanted)} failed to load; still serving "
                                   f"{', '.join(str(mv.version) for mv in keep)}")  # fmt: skip
                    log.error("model %s: %s", name, entry.error)
                    retire = [mv for mv in retire if mv.state is not State.READY]
            for v in [mv.version for mv in retire]:
                del entry.versions[v]
            await asyncio.gather(*(self._retire(mv, forget_metrics=False) for mv in old.values()),
                                 *(self._retire(mv) for mv in retire))
            self._set_ready_gauges(entry)
        return entry

    async def _load_version(self, name: str, config: ModelConfig, folder: Path, version: int) -> ModelVersion:
        mv = ModelVersion(name, version, config, folder / str(version))
        start = time.perf_counter()
        self.metrics.model_ready.labels(*mv.key).set(0)
        try:
            await workers.load(mv.load_sync, self.settings)
            mv.start_batchers(self.settings, self.metrics)
        except Exception as exc:  # noqa: BLE001 - any failure isolates this version, never the server
            mv.state, mv.reason = State.UNAVAILABLE, f"{type(exc).__name__}: {exc}"
            log.error("model %s version %d failed to load: %s", name, version, mv.reason)
            return mv
        mv.state, mv.loaded_at = State.READY, time.time()
        log.info("model %s version %d READY on %s (%.2fs)", name, version, sorted(set(mv.providers)),
                 time.perf_counter() - start)  # fmt: skip
        return mv

    async def _retire(self, mv: ModelVersion, forget_metrics: bool = True) -> None:
        """Drain (finish accepted requests), then free the sessions. A version replaced by a
        reload of the same number keeps its metric series (the new one owns them)."""
        if mv.state is State.READY:
            mv.state = State.UNLOADING
            if not await mv.drain(self.settings.unload_drain_seconds):
                log.warning("%s/%s: drain timed out; closing with work pending", mv.name, mv.version)
        await mv.close()
        if forget_metrics:
            self.metrics.forget_version(*mv.key)
        log.info("model %s version %d unloaded", mv.name, mv.version)

    async def unload(self, name: str) -> None:
        entry = self.models.get(check_model_name(name))
        if entry is None:
            raise NotFound(f"model {name!r} is not loaded")
        async with entry.lock:
            versions = list(entry.versions.values())
            for mv in versions:
                if mv.state is State.READY:
                    mv.state = State.UNLOADING  # new requests are refused from here on
            await asyncio.gather(*(self._retire(mv) for mv in versions))
            self.models.pop(name, None)

    async def close(self) -> None:
        if self._poll_task:
            self._poll_task.cancel()
        for name in list(self.models):
            await self.unload(name)

    def _set_ready_gauges(self, entry: ModelEntry) -> None:
        for mv in entry.versions.values():
            self.metrics.model_ready.labels(*mv.key).set(1 if mv.state is State.READY else 0)

    # ------------------------------------------------------------------ polling
    def start_polling(self) -> None:
        self._poll_task = asyncio.get_running_loop().create_task(self._poll(), name="repository-poll")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.repository_poll_seconds)
            try:
                on_disk = set(self.discover())
                for name in on_disk:
                    await self.load(name)
                for name in set(self.models) - on_disk:
                    await self.unload(name)
            except Exception:  # noqa: BLE001 - a bad scan must not stop future scans
                log.exception("repository poll failed")

    # ------------------------------------------------------------------ lookup
    def get(self, name: str, version: str | int | None = None) -> ModelVersion:
        """The version a request should use: the given one, or the newest READY one."""
        entry = self.models.get(name)
        if entry is None:
            raise NotFound(f"model {name!r} not found (loaded models: {', '.join(sorted(self.models)) or 'none'})")
        if version not in (None, ""):
            try:
                v = int(version)  # type: ignore[arg-type]
            except ValueError:
                raise InvalidInput(f"version must be a positive integer, got {version!r}") from None
            mv = entry.versions.get(v)
            if mv is None:
                raise NotFound(f"model {name!r} has no version {v} (versions: "
                               f"{', '.join(map(str, sorted(entry.versions))) or 'none'})")  # fmt: skip
            return mv
        ready = entry.ready_versions()
        if ready:
            return ready[-1]
        if entry.versions:
            return entry.versions[max(entry.versions)]  # not ready: the caller reports its state
        raise ModelNotReady(f"model {name!r} is not available: {entry.error or 'no version loaded'}")

    def index(self) -> list[dict]:
        """Repository index: every model on disk or loaded, with each version's state."""
        rows: list[dict] = []
        for name in sorted(set(self.discover()) | set(self.models)):
            entry = self.models.get(name)
            if entry is None or (not entry.versions and not entry.error):
                rows.append({"name": name, "state": "UNAVAILABLE", "reason": "not loaded"})
                continue
            if entry.error and not entry.versions:
                rows.append({"name": name, "state": "UNAVAILABLE", "reason": entry.error})
            for v, mv in sorted(entry.versions.items()):
                row = {"name": name, "version": str(v), "state": mv.state.value, "reason": mv.reason}
                if mv.graphs:
                    row["providers"] = sorted(set(mv.providers))
                rows.append(row)
        return rows
