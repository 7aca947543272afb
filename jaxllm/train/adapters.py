"""LoRA in the trainer: the state trains the adapters, the frozen base rides beside it, and the
objective's reference models are views of that base (no second copy of the weights).

With ``model.lora.rank`` > 0 the loop keeps

- ``state.params``: the trainable part (`model.lora.split`: adapters + ``model.lora.train`` leaves), the
  only thing the optimizer and the checkpoints hold;
- the base: every other parameter, loaded from ``init_from`` (and the objective's other declared sources),
  cast to ``model.lora.base_dtype`` or quantized (QLoRA), passed to the jitted step as the frozen argument
  ``_lora_base``;
- views: a frozen model the objective declared from the same checkpoint as a trainable part (DPO's, PPO's
  and GRPO's reference = ``init_from``; PPO's reward model = the critic's start) is that part of the base:
  the model with adapters off. The loss sees ``frozen[name]`` as before; the step receives the base once.

The objective never knows: `wrap_loss` hands its loss the whole tree (`overlay`) and the frozen dict it
declared, and everything else the loop hands an objective (rollouts, evaluation, samples) gets the same.
``lora_base.json`` in the run dir records where each part of the base came from, so a LoRA run's
checkpoint (adapters only) can be loaded whole (`jaxllm.pretrained`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxllm.model.lora import cast, overlay, quantize_kernels

BASE = "_lora_base"
BASE_FILE = "lora_base.json"


@dataclasses.dataclass
class LoraRun:
    """What the loop holds for a LoRA run besides the state."""

    base: dict                      # the frozen base on the mesh
    views: dict[str, str | None]    # frozen name -> the base's subtree key that serves it (None: the whole base)

    def params(self, trainable) -> dict:
        """The whole parameter tree the objective's model applies (base + trainable)."""
        return overlay(self.base, trainable)

    def objective_frozen(self, frozen: dict) -> dict:
        """The frozen dict the objective declared: the step's ``frozen`` with the views filled in from the base."""
        base = frozen[BASE]
        out = {k: v for k, v in frozen.items() if k != BASE}
        out.update({name: base if key is None else base[key] for name, key in self.views.items()})
        return out

    def step_frozen(self, declared: dict) -> dict:
        """The step's frozen argument: the base once, plus the declared models that are not views of it."""
        return {BASE: self.base, **{k: v for k, v in declared.items() if k not in self.views}}

    def keep_views(self, declared: dict) -> None:
        """Forget views the objective dropped (DPO's precomputed reference)."""
        self.views = {k: v for k, v in self.views.items() if k in declared}


def wrap_loss(loss, run: LoraRun):
    """The objective's ``loss(params, batch, frozen, rng)`` as a loss of the trainable part alone."""

    def lora_loss(trainable, batch, frozen, rng=None):
        return loss(overlay(frozen[BASE], trainable), batch, run.objective_frozen(frozen), rng)

    return lora_loss


def views(parts: dict, frozen_decl: dict) -> dict[str, str | None]:
    """Which declared frozen models are served by the base: those read from the same checkpoint, into the
    same kind of model, as a trainable part (``parts``: key -> `Params`), and copies of the initial ones."""
    out = {}
    for name, p in frozen_decl.items():
        if p.path is None:
            out[name] = p.copy
            continue
        for key, q in parts.items():
            if q.path == p.path and type(q.module) is type(p.module) and q.select is p.select:
                out[name] = key
    return out


def _part_sharding(value_sharding: NamedSharding, scale_shape) -> NamedSharding:
    """A part of a quantized kernel (codes, scale): the kernel's axes where the part's dimension still divides."""
    mesh, spec = value_sharding.mesh, list(value_sharding.spec) + [None] * len(scale_shape)
    fixed = []
    for dim, axes in zip(scale_shape, spec):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        size = 1
        for a in names:
            size *= mesh.shape[a]
        fixed.append(axes if names and dim % size == 0 and dim > 1 else None)
    return NamedSharding(mesh, P(*fixed))


def storage(base, dtype: str, quantize: str, block: int):
    """``(fn, shardings)``: how the base is kept (floating leaves in ``dtype``, "param" = as loaded; then kernels
    quantized, ``quantize`` int8 | nf4) and the shardings of its result (each quantized part on its kernel's
    axes where they still divide). ``base`` may be abstract (shapes with shardings)."""

    def fn(t):
        if dtype != "param":
            t = cast(t, jnp.dtype(dtype))
        return t if quantize == "none" else quantize_kernels(t, quantize, block)

    shapes = jax.eval_shape(fn, base)

    def sharding_of(shape_tree, sh):
        if isinstance(shape_tree, jax.ShapeDtypeStruct):
            return sh
        return jax.tree.map(lambda part: _part_sharding(sh, part.shape), shape_tree)

    shardings = jax.tree.map(lambda x: x.sharding, base)
    return fn, jax.tree.map(sharding_of, shapes, shardings, is_leaf=lambda x: not isinstance(x, dict))


def store_base(base, dtype: str, quantize: str, block: int):
    """The base as `storage` keeps it, on the mesh (the loaded arrays are dropped by the caller)."""
    if dtype == "param" and quantize == "none":
        return base
    fn, shardings = storage(base, dtype, quantize, block)
    return jax.jit(fn, out_shardings=shardings)(base)


def write_base_file(run_dir: Path, parts: dict, scale: float) -> None:
    """``lora_base.json``: each part of the base (key "" = the whole tree) and the checkpoint it came from
    (null: the run's fresh initialisation), with the adapters' scale alpha / r."""
    record = {"scale": scale, "parts": {key or "": (str(Path(p.path).absolute()) if p.path else None)
                                        for key, p in parts.items()}}
    (run_dir / BASE_FILE).write_text(json.dumps(record, indent=1) + "\n")


def read_base_file(run_dir: Path) -> dict | None:
    path = Path(run_dir) / BASE_FILE
    return json.loads(path.read_text()) if path.is_file() else None
