"""Checkpoints with Orbax: async saves of the sharded train state plus the data position.

Items per step: ``params`` (so `init_from` can take parameters alone),
``train`` (optimizer state, step, RNG), ``data`` (the iterator position) and
``config`` (the resolved config). Orbax writes each step into a temporary
directory and renames it when complete, so a killed save leaves no step
behind that `latest_step` would pick up.

What Orbax does not promise, this module adds (docs/RELIABILITY.md):
- a state with a NaN or Inf in it is never saved (`save` refuses it);
- once a step is final, process 0 writes ``<step>/SHA256SUMS`` (``sha256sum -c`` format) of
  every file in it, in a background thread; restore checks it first, so a flipped byte is
  caught rather than silently restored (Orbax keeps no checksum of array data);
- `restore_newest` tries the newest step and, when it does not restore, moves it aside
  (``<step>.bad-<time>``, never deleted) and tries the one before.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxllm.config.schema import CheckpointConfig
from jaxllm.errors import UserError
from jaxllm.train.state import TrainState

SUMS = "SHA256SUMS"


class CheckpointMismatch(UserError):
    """The checkpoint is intact but was written by a different model config (not damage: never moved aside)."""


class DamagedCheckpoint(Exception):
    """One checkpoint step cannot be restored: its files are missing, truncated, altered or non-finite."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums(step_dir: Path) -> None:
    """``SHA256SUMS`` of every file under a finished step dir (relative paths, sorted)."""
    step_dir = Path(step_dir)
    if not step_dir.is_dir():  # rotated away already
        return
    files = sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != SUMS)
    lines = "".join(f"{_sha256(p)}  {p.relative_to(step_dir).as_posix()}\n" for p in files)
    tmp = step_dir / (SUMS + ".tmp")
    tmp.write_text(lines)
    tmp.rename(step_dir / SUMS)


def verify_checksums(step_dir: Path) -> bool:
    """Raise `DamagedCheckpoint` naming the first missing or altered file; False if the step has no sums."""
    sums = Path(step_dir) / SUMS
    if not sums.is_file():
        return False
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        f = Path(step_dir) / name
        if not f.is_file():
            raise DamagedCheckpoint(f"file {name} is missing")
        if _sha256(f) != digest:
            raise DamagedCheckpoint(f"file {name} does not match its SHA-256 in {SUMS} (altered or truncated)")
    return True


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def all_finite(tree) -> bool:
    """Whether every float array in ``tree`` is free of NaN and Inf (one reduction on device)."""
    from jaxllm.parallel.sharding import to_host

    return bool(to_host(_all_finite(tree)))


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0].split(" See full TensorStore details")[0][:300] if text else ""
    return f"{type(e).__name__}: {first}".rstrip(": ")


@contextlib.contextmanager
def _quiet_absl():
    """Orbax logs an ERROR for each damaged metadata file it lists; restore reports damage itself."""
    log = logging.getLogger("absl")
    old = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(old)


@contextlib.contextmanager
def _held_stderr():
    """Hold what Orbax, TensorStore and absl print (file descriptor 2) while a step restores: replayed if
    it restores, dropped if it fails (the failure is then reported in one line)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            time.sleep(0.05 if not ok else 0)  # let TensorStore's threads finish their complaints
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if ok:
                held.seek(0)
                sys.stderr.buffer.write(held.read())
                sys.stderr.flush()

_ITEMS = ("params", "train", "data", "config")


def _handlers() -> dict:
    """Handlers named up front, so metadata can be read before any restore."""
    return {"params": ocp.StandardCheckpointHandler(), "train": ocp.StandardCheckpointHandler(),
            "data": ocp.JsonCheckpointHandler(), "config": ocp.JsonCheckpointHandler()}


class Checkpointer:
    def __init__(self, directory: Path, cfg: CheckpointConfig):
        self.cfg = cfg
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=cfg.keep, keep_period=cfg.keep_every, enable_async_checkpointing=cfg.async_save,
            create=True,
        )
        with _quiet_absl():
            self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=_handlers())
        self._unsummed: int | None = None  # a step saved whose SHA256SUMS is not written yet
        self._hasher: threading.Thread | None = None

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def _checksum_finished(self) -> None:
        """Once the pending save is final, hash its files in a background thread (process 0)."""
        if self._unsummed is None or not self.cfg.checksums:
            return
        self.manager.wait_until_finished()
        if self._hasher is not None:
            self._hasher.join()
        if jax.process_index() == 0:
            self._hasher = threading.Thread(target=write_checksums, args=(self.directory / str(self._unsummed),),
                                            daemon=False)
            self._hasher.start()
        self._unsummed = None

    def save(self, state: TrainState, data_state: dict, config: dict, force: bool = False) -> None:
        step = int(jax.device_get(state.step))
        if step in self.manager.all_steps():
            return
        if not all_finite((state.params, state.opt_state)):
            raise UserError(f"refusing to save step {step}: the train state holds NaN or Inf values; the last good "
                            f"checkpoint is {self.directory / str(self.latest_step())}.")
        self._checksum_finished()
        self._unsummed = step
        self.manager.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            train=ocp.args.StandardSave({"opt_state": state.opt_state, "step": state.step, "rng": state.rng}),
            data=ocp.args.JsonSave(data_state),
            config=ocp.args.JsonSave(config),
        ), force=force)

    def restore(self, abstract: TrainState, step: int | None = None) -> tuple[TrainState, dict]:
        """Full state onto the shardings of ``abstract`` (any mesh shape), plus the data position."""
        step = self.latest_step() if step is None else step
        _check_shapes(self.manager, step, abstract.params, self.manager.directory)
        out = self.manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract.params),
            train=ocp.args.StandardRestore({"opt_state": abstract.opt_state, "step": abstract.step, "rng": abstract.rng}),
            data=ocp.args.JsonRestore(),
        ))
        t = out["train"]
        return TrainState(step=t["step"], params=out["params"], opt_state=t["opt_state"], rng=t["rng"]), out["data"]

    def _try_restore(self, abstract: TrainState, step: int) -> tuple[TrainState, dict]:
        """`restore`, with every way the files can be damaged turned into `DamagedCheckpoint`."""
        step_dir = self.directory / str(step)
        if not any(step_dir.iterdir()):
            raise DamagedCheckpoint("its directory is empty")
        missing = [item for item in ("params", "train", "data") if not (step_dir / item).is_dir()]
        if missing:
            raise DamagedCheckpoint(f"{', '.join(m + '/' for m in missing)} missing")
        try:
            verify_checksums(step_dir)
            with _held_stderr(), _quiet_absl():
                state, data = self.restore(abstract, step)
        except (CheckpointMismatch, DamagedCheckpoint):
            raise
        except UserError as e:
            raise DamagedCheckpoint(str(e).split(": ", 1)[-1]) from None
        except Exception as e:  # Orbax / TensorStore / JSON errors of missing or truncated files
            raise DamagedCheckpoint(_one_line(e)) from None
        if not all_finite((state.params, state.opt_state)):
            raise DamagedCheckpoint("it holds NaN or Inf values")
        return state, data

    def _move_aside(self, step: int) -> Path:
        """``<step>`` -> ``<step>.bad-<UTC time>`` (process 0; every process waits for it)."""
        src = self.directory / str(step)
        dst = self.directory / f"{step}.bad-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        if jax.process_index() == 0 and src.exists():
            src.rename(dst)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"jaxllm_move_aside_{step}")
        with _quiet_absl():
            self.manager.reload()
        return dst

    def restore_newest(self, abstract: TrainState, say) -> tuple[int, TrainState, dict] | None:
        """The newest step that restores, as ``(step, state, data position)``; None if there is no step.

        A step that fails is named in one line (``say``), moved aside and the previous one tried;
        when none restores, a `UserError` lists what was tried. A model-config mismatch is raised
        at once: the checkpoint is fine, the config is not.
        """
        tried = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                state, data = self._try_restore(abstract, step)
            except DamagedCheckpoint as e:
                dst = self._move_aside(step)
                say(f"warning: checkpoint step {step} does not restore ({e}); moved it to {dst.name} and trying the one before")
                tried.append(f"{step} ({e})")
                continue
            if tried:
                say(f"restored step {step} instead of step {tried[0].split()[0]}")
            return step, state, data
        if tried:
            raise UserError(f"no checkpoint in {self.directory} restores; tried {'; '.join(tried)}. Each was moved "
                            f"aside as <step>.bad-<time>; delete {self.directory} to start over, or move a good "
                            "checkpoint back.")
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()
        self._checksum_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self._checksum_finished()
        if self._hasher is not None:
            self._hasher.join()
        self.manager.close()


def _flat_shapes(tree) -> dict[str, tuple]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(getattr(v, "shape", ())) for path, v in flat}


def _check_shapes(manager: ocp.CheckpointManager, step: int, abstract_params, where) -> None:
    """Name the first parameter whose shape or presence differs, instead of Orbax's deep error."""
    meta = manager.item_metadata(step)["params"]
    if meta is None:
        raise UserError(f"{where}: checkpoint step {step} has no parameters (torn or foreign checkpoint).")
    mismatch = CheckpointMismatch
    saved, want = _flat_shapes(meta), _flat_shapes(abstract_params)
    for name, shape in want.items():
        if name not in saved:
            raise mismatch(f"{where} step {step}: parameter {name} (shape {shape}) is missing from the checkpoint; "
                            "the model config differs from the one that wrote it (family, n_layers, scan_layers...).")
        if tuple(saved[name]) != shape:
            raise mismatch(f"{where} step {step}: parameter {name} has shape {tuple(saved[name])} in the checkpoint "
                            f"but the model expects {shape}; match the model config to the checkpoint's config.yaml.")
    extra = sorted(set(saved) - set(want))
    if extra:
        raise mismatch(f"{where} step {step}: the checkpoint has parameters the model lacks, e.g. {extra[0]}; "
                        "the model config differs from the one that wrote it.")


def _find_checkpoint_dir(path: Path) -> tuple[Path, int | None]:
    """Accept a run dir, its checkpoints/ dir, or checkpoints/<step>."""
    if (path / "checkpoints").is_dir():
        return path / "checkpoints", None
    if path.name.isdigit() and path.parent.is_dir():
        return path.parent, int(path.name)
    return path, None


def load_params(path: str, abstract_params):
    """Parameters only (for ``init_from``) from a jaxllm run's Orbax checkpoint, placed on the shardings in
    ``abstract_params``; `jaxllm.pretrained.load_params` also takes a Hugging Face dir."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"init_from = {path!r}: no such directory. Give a run dir, its checkpoints/ dir or checkpoints/<step>, "
                        "or a Hugging Face model directory (config.json + *.safetensors).")
    directory, step = _find_checkpoint_dir(p)
    manager = ocp.CheckpointManager(directory.absolute(), item_handlers=_handlers(),
                                    options=ocp.CheckpointManagerOptions(create=False))
    step = manager.latest_step() if step is None else step
    if step is None or step not in manager.all_steps():
        raise UserError(f"init_from = {path!r}: no complete checkpoint found in {directory}.")
    _check_shapes(manager, step, abstract_params, f"init_from = {path!r}")
    params = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params)))["params"]
    manager.close()
    return params


def load_saved_params(path: str, sharding):
    """A checkpoint's parameters with the shapes they were saved with, every leaf on ``sharding`` (a LoRA run's
    adapters, small enough to replicate, read without the model that wrote them)."""
    directory, step = _find_checkpoint_dir(Path(path))
    manager = ocp.CheckpointManager(directory.absolute(), item_handlers=_handlers(),
                                    options=ocp.CheckpointManagerOptions(create=False))
    step = manager.latest_step() if step is None else step
    if step is None or step not in manager.all_steps():
        raise UserError(f"{path}: no complete checkpoint found in {directory}.")
    meta = manager.item_metadata(step)["params"]
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding), meta,
                            is_leaf=lambda m: hasattr(m, "shape"))
    params = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract)))["params"]
    manager.close()
    return params


def as_numpy(tree):
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def latest_step(directory: Path) -> int | None:
    """The newest complete checkpoint step in ``directory`` (None if there is none), without creating it."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    try:
        with _quiet_absl():
            manager = ocp.CheckpointManager(directory.absolute(), item_handlers=_handlers(),
                                            options=ocp.CheckpointManagerOptions(create=False))
            step = manager.latest_step()
            manager.close()
    except Exception:  # damaged metadata: the newest numbered dir; restore sorts it out
        steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir()]
        step = max(steps) if steps else None
    return step
