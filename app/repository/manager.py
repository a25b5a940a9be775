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
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from app.config import Settings
from app.errors import DendriteError, InvalidInput, ModelNotReady, ModelTraining, NotFound
from app.metrics import Metrics
from app.protocol.model_config import ConfigError, ModelConfig, effective_config
from app.tasks.registry import load_model_config
from app.repository.version import ModelVersion, State
from app.repository.training import TrainingStatus, read_status
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
    said: dict[int | None, str] = field(default_factory=dict, repr=False)  # last problem logged, per version
    failed_files: dict[int, tuple] = field(default_factory=dict, repr=False)  # a failed version's folder then

    def _say_once(self, version: int | None, message: str, level: int) -> None:
        """Log a problem of the model (version None) or of one version only when it changes, since poll
        mode re-checks every few seconds (a fresh make serve once said the same line 786 times)."""
        if message and message != self.said.get(version):
            log.log(level, "model %s%s: %s", self.name, "" if version is None else f" version {version}", message)
        self.said[version] = message
    folder: Path | None = None

    def training(self) -> TrainingStatus | None:
        """The trainer's report while this model has no version yet (read fresh: it changes every few seconds)."""
        if self.versions or self.folder is None:
            return None
        return read_status(self.folder)

    def state(self) -> tuple[State, str]:
        """The model's state as a whole (the best of its versions) and the reason when not READY."""
        if self.ready_versions():
            return State.READY, ""
        if self.versions:
            mv = self.versions[max(self.versions)]
            return mv.state, self.error or mv.reason
        status = self.training()
        if status is not None and status.active:
            return State.PENDING, status.describe()
        if status is not None:  # failed, or the trainer died: that is the reason, not "no version folders"
            return State.UNAVAILABLE, status.describe()
        return State.UNAVAILABLE, self.error or "no version loaded"

    def set_error(self, message: str, level: int = logging.WARNING) -> None:
        """Record (or clear, with "") the model-level problem, logged once per change."""
        self._say_once(None, message, level)
        self.error = message

    def version_loaded(self, mv: ModelVersion) -> None:
        """Log a version's load failure once per change, however often it is retried."""
        self._say_once(mv.version, "" if mv.state is State.READY else f"failed to load: {mv.reason}", logging.ERROR)

    def ready_versions(self) -> list[ModelVersion]:
        return [v for _, v in sorted(self.versions.items()) if v.state is State.READY]


class ModelRepository:
    def __init__(self, root: Path, settings: Settings, metrics: Metrics):
        self.root = root
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, ModelEntry] = {}
        self._poll_task: asyncio.Task | None = None
        metrics.track_model_states(self.model_states)
        # Per model name, not per entry: unload drops the entry, and a load that waited on the
        # entry's own lock went on loading into the dropped entry (not in the index, never closed).
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def _serialized(self, name: str):
        """Load and unload of one model run one at a time; the lock is dropped when no one holds
        or waits for it, so arbitrary names do not pile up locks."""
        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)

    # ------------------------------------------------------------------ discovery
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
        await self.load_many(self.discover())

    async def load_many(self, names: list[str]) -> None:
        """Start-up loads: each model isolated (``_load_isolated``). An invalid name is a settings error."""
        for name in names:
            check_model_name(name)
        await asyncio.gather(*(self._load_isolated(name) for name in names))

    async def _load_isolated(self, name: str, retry_unchanged: bool = True) -> None:
        """``load`` for start-up and poll scans: whatever goes wrong stays this model's problem
        (UNAVAILABLE with the reason, logged once) and every other model still loads."""
        try:
            await self.load(name, retry_unchanged=retry_unchanged)
        except Exception as exc:  # noqa: BLE001 - e.g. an unreadable folder; the next scan retries
            message = exc.message if isinstance(exc, DendriteError) else f"could not be read: {exc}"
            self.models.setdefault(name, ModelEntry(name, folder=self.root / name)).set_error(message, logging.ERROR)

    async def load(self, name: str, *, retry_unchanged: bool = True) -> ModelEntry:
        """(Re)load a model: read its config, load the versions its policy selects that are not
        loaded yet, then retire the versions it no longer selects. Errors stay on the model.
        ``retry_unchanged=False`` (poll scans) retries a failed version only once its files changed:
        a model that fails late (warm-up, a config mismatch) would otherwise cost a load's CPU every scan."""
        check_model_name(name)
        async with self._serialized(name):
            folder = (self.root / name).resolve()
            entry = self.models.setdefault(name, ModelEntry(name, folder=folder))
            if folder.parent != self.root.resolve():
                # Models load only from folders inside the repository: a symlink could point anywhere.
                entry.set_error(f"its folder resolves to {folder}, outside the model repository {self.root}; "
                                "symlinked model folders are refused", logging.ERROR)  # fmt: skip
                return entry
            cfg_path = next((folder / c for c in CONFIG_FILES if (folder / c).is_file()), None)
            if cfg_path is None:
                if not entry.versions:
                    self.models.pop(name, None)
                raise NotFound(f"model {name!r} has no config.yaml in the repository {self.root}")
            try:
                config = effective_config(load_model_config(cfg_path, name), self.settings)
            except ConfigError as exc:
                entry.set_error(exc.message, logging.ERROR)
                return entry
            config_changed = entry.config is not None and entry.config != config
            entry.config = config
            wanted = config.version_policy.select(self._versions_on_disk(folder))
            training = not wanted and read_status(folder) is not None
            if wanted:
                problem = ""
            elif training:  # the model's state says how far training is
                problem = "no version yet: a trainer is producing one"
            else:
                problem = f"no version folders (<n>/{next(iter(config.graphs.values()))}) in {folder}"
            # A changed config reloads every version (new batching or instances); otherwise only new ones.
            to_load = [v for v in wanted if config_changed or v not in entry.versions
                       or entry.versions[v].state is State.UNAVAILABLE
                       and (retry_unchanged or entry.failed_files.get(v) != _files(folder / str(v)))]  # fmt: skip
            old = {v: entry.versions[v] for v in to_load if v in entry.versions}
            seen = {v: _files(folder / str(v)) for v in to_load}  # before loading: a copy may finish meanwhile
            fresh = await asyncio.gather(*(self._load_version(name, config, folder, v) for v in to_load))
            for mv in fresh:
                entry.version_loaded(mv)
                entry.failed_files.pop(mv.version, None)
                if mv.state is not State.READY:
                    entry.failed_files[mv.version] = seen[mv.version]
                prev = old.get(mv.version)
                if mv.state is not State.READY and prev is not None and prev.state is State.READY:
                    # A failed reload of a serving version keeps the old one serving.
                    problem = f"reload of version {mv.version} failed, still serving the old one: {mv.reason}"
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
                    problem = (f"version(s) {', '.join(str(v) for v in wanted)} failed to load; still serving "
                               f"{', '.join(str(mv.version) for mv in keep)}")  # fmt: skip
                    retire = [mv for mv in retire if mv.state is not State.READY]
            for v in [mv.version for mv in retire]:
                del entry.versions[v]
            await asyncio.gather(*(self._retire(mv, forget_metrics=False) for mv in old.values()),
                                 *(self._retire(mv) for mv in retire))
            entry.set_error(problem, logging.INFO if training else logging.WARNING if not wanted else logging.ERROR)
            self._set_ready_gauges(entry)
        return entry

    async def _load_version(self, name: str, config: ModelConfig, folder: Path, version: int) -> ModelVersion:
        mv = ModelVersion(name, version, config, folder / str(version))
        start = time.perf_counter()
        self.metrics.model_ready.labels(*mv.key).set(0)
        failures = self.metrics.load_failures.labels(*mv.key)  # a 0 series from the first load on
        try:
            await workers.load(mv.load_sync, self.settings)
            mv.start_batchers(self.settings, self.metrics)
        except Exception as exc:  # noqa: BLE001 - any failure isolates this version, never the server
            # The reason reaches clients (503 text, the index): our words or the library's message, never a class name.
            mv.state, mv.reason = State.UNAVAILABLE, exc.message if isinstance(exc, DendriteError) else str(exc)
            failures.inc()
            await mv.close()  # sessions made before the failure (warm-up, a config mismatch) are freed now
            return mv  # logged by the entry, once per change
        finally:
            self.metrics.load_duration.labels(*mv.key).observe(time.perf_counter() - start)
        mv.state, mv.loaded_at = State.READY, time.time()
        log.info("model %s version %d READY on %s (%.2fs)", name, version, sorted(set(mv.providers)),
                 time.perf_counter() - start)  # fmt: skip
        return mv

    async def _retire(self, mv: ModelVersion, forget_metrics: bool = True) -> None:
        """Drain (finish accepted requests), then free the sessions. A version replaced by a
        reload of the same number keeps its metric series (the new one owns them)."""
        served = mv.state in (State.READY, State.UNLOADING)  # unload marks its versions UNLOADING first
        if served:
            mv.state = State.UNLOADING
            if not await mv.drain(self.settings.unload_drain_seconds):
                log.warning("%s/%s: drain timed out; closing with work pending", mv.name, mv.version)
        await mv.close()
        if forget_metrics:
            self.metrics.forget_version(*mv.key)
        if served:
            log.info("model %s version %d unloaded", mv.name, mv.version)

    async def unload(self, name: str) -> None:
        if check_model_name(name) not in self.models:
            raise NotFound(f"model {name!r} is not loaded")
        async with self._serialized(name):
            entry = self.models.get(name)
            if entry is None:  # unloaded while this call waited
                raise NotFound(f"model {name!r} is not loaded")
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
                    await self._load_isolated(name, retry_unchanged=False)
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
        state, reason = entry.state()
        if state is State.PENDING:
            status = entry.training()
            eta = status.eta_seconds if status is not None else None
            # Retry-After: the ETA when it is near, else a poll-sized wait (clients should not spin)
            raise ModelTraining(f"model {name!r} is being trained ({reason})",
                                retry_after=int(min(60, max(1, eta if eta is not None else 30))))  # fmt: skip
        raise ModelNotReady(f"model {name!r} is not available: {reason}")

    def expected(self) -> list[str]:
        """The models the server is configured to serve: those loaded at start (none), every model of the
        repository as it is now (poll), or the startup models and those loaded through the API (explicit)."""
        mode = self.settings.model_control_mode
        if mode == "explicit":
            return sorted(set(self.settings.startup_models) | set(self.models))
        if mode == "poll":
            return sorted(set(self.discover()) | set(self.models))
        return sorted(self.models)

    def waiting(self, names: list[str]) -> list[str]:
        """Of ``names``, those not READY, each as "name (STATE: reason)"."""
        out = []
        for name in names:
            entry = self.models.get(name)
            state, reason = entry.state() if entry is not None else (State.UNAVAILABLE, "not loaded")
            if state is not State.READY:
                out.append(f"{name} ({state.value}" + (f": {reason})" if reason else ")"))
        return out

    def model_states(self) -> list[tuple[str, str]]:
        """(model, state) for every model on disk or loaded (the dendrite_model_state gauge)."""
        return [(name, self.models[name].state()[0].value if name in self.models else State.UNAVAILABLE.value)
                for name in sorted(set(self.discover()) | set(self.models))]  # fmt: skip

    def index(self) -> list[dict]:
        """Repository index: every model on disk or loaded, with each version's state."""
        rows: list[dict] = []
        for name in sorted(set(self.discover()) | set(self.models)):
            entry = self.models.get(name)
            if entry is None or (not entry.versions and not entry.error):
                rows.append({"name": name, "state": "UNAVAILABLE", "reason": "not loaded"})
                continue
            if not entry.versions:
                state, reason = entry.state()
                rows.append({"name": name, "state": state.value, "reason": reason})
            for v, mv in sorted(entry.versions.items()):
                row = {"name": name, "version": str(v), "state": mv.state.value, "reason": mv.reason}
                if mv.graphs:
                    row["providers"] = sorted(set(mv.providers))
                rows.append(row)
        return rows


def _files(folder: Path) -> tuple:
    """What a version folder holds (path, size, mtime of each file), to tell whether it changed."""
    try:
        return tuple(sorted((str(p.relative_to(folder)), st.st_size, st.st_mtime_ns)
                            for p in folder.rglob("*") if p.is_file() for st in [p.stat()]))  # fmt: skip
    except OSError:  # changing while read: a changed folder
        return ()
