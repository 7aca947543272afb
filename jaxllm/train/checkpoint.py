"""Checkpoints with Orbax: async saves of the sharded train state plus the data position.

Items per step: ``params`` (so `init_from` can take parameters alone),
``train`` (optimizer state, step, RNG), ``data`` (the iterator position) and
``config`` (the resolved config). Orbax writes each step into a temporary
directory and renames it when complete, so a killed save leaves no step
behind that `latest_step` would pick up.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxllm.config.schema import CheckpointConfig
from jaxllm.errors import UserError
from jaxllm.train.state import TrainState

_ITEMS = ("params", "train", "data", "config")


def _handlers() -> dict:
    """Handlers named up front, so metadata can be read before any restore."""
    return {"params": ocp.StandardCheckpointHandler(), "train": ocp.StandardCheckpointHandler(),
            "data": ocp.JsonCheckpointHandler(), "config": ocp.JsonCheckpointHandler()}


class Checkpointer:
    def __init__(self, directory: Path, cfg: CheckpointConfig):
        self.cfg = cfg
        options = ocp.CheckpointManagerOptions(
            max_to_keep=cfg.keep, keep_period=cfg.keep_every, enable_async_checkpointing=cfg.async_save,
            create=True,
        )
        self.manager = ocp.CheckpointManager(Path(directory).absolute(), options=options, item_handlers=_handlers())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: TrainState, data_state: dict, config: dict, force: bool = False) -> None:
        step = int(jax.device_get(state.step))
        if step in self.manager.all_steps():
            return
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

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _flat_shapes(tree) -> dict[str, tuple]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(getattr(v, "shape", ())) for path, v in flat}


def _check_shapes(manager: ocp.CheckpointManager, step: int, abstract_params, where) -> None:
    """Name the first parameter whose shape or presence differs, instead of Orbax's deep error."""
    meta = manager.item_metadata(step)["params"]
    if meta is None:
        raise UserError(f"{where}: checkpoint step {step} has no parameters (torn or foreign checkpoint).")
    saved, want = _flat_shapes(meta), _flat_shapes(abstract_params)
    for name, shape in want.items():
        if name not in saved:
            raise UserError(f"{where} step {step}: parameter {name} (shape {shape}) is missing from the checkpoint; "
                            "the model config differs from the one that wrote it (family, n_layers, scan_layers...).")
        if tuple(saved[name]) != shape:
            raise UserError(f"{where} step {step}: parameter {name} has shape {tuple(saved[name])} in the checkpoint "
                            f"but the model expects {shape}; match the model config to the checkpoint's config.yaml.")
    extra = sorted(set(saved) - set(want))
    if extra:
        raise UserError(f"{where} step {step}: the checkpoint has parameters the model lacks, e.g. {extra[0]}; "
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


def as_numpy(tree):
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def latest_step(directory: Path) -> int | None:
    """The newest complete checkpoint step in ``directory`` (None if there is none), without creating it."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    manager = ocp.CheckpointManager(directory.absolute(), item_handlers=_handlers(),
                                    options=ocp.CheckpointManagerOptions(create=False))
    step = manager.latest_step()
    manager.close()
    return step
