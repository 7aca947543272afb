"""Logical axis names -> mesh shardings, and global batches from per-process data."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def rules_tuple(rules: list) -> tuple:
    """Config rules (lists from YAML) as the tuple-of-tuples Flax expects."""
    return tuple((name, tuple(t) if isinstance(t, list) else t) for name, t in rules)


def logical_to_shardings(abstract_boxed, mesh: Mesh, rules: list):
    """Shardings for a tree whose leaves are boxed with logical names (scalars replicate). A dimension its mesh
    axes do not divide (a 28-wide embedding over 8 devices; odd sizes of imported models) is replicated
    instead of failing inside JAX."""
    specs = nn.get_partition_spec(abstract_boxed)
    shardings = nn.logical_to_mesh_sharding(specs, mesh, rules_tuple(rules))
    boxed = lambda x: isinstance(x, nn.meta.AxisMetadata)  # noqa: E731
    shapes = jax.tree.map(lambda x: getattr(x.unbox(apply_constraint=False) if boxed(x) else x, "shape", None),
                          abstract_boxed, is_leaf=boxed)
    return jax.tree.map(lambda sh, shape: _divisible(sh, shape, mesh), shardings, shapes,
                        is_leaf=lambda x: isinstance(x, NamedSharding))


def _divisible(sharding: NamedSharding, shape, mesh: Mesh) -> NamedSharding:
    if shape is None:
        return sharding
    spec = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
    fixed = []
    for dim, axes in zip(shape, spec):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        fixed.append(axes if dim % int(np.prod([mesh.shape[a] for a in names] or [1])) == 0 else None)
    return sharding if fixed == spec else NamedSharding(mesh, P(*fixed), memory_kind=sharding.memory_kind)


def batch_sharding(mesh: Mesh, rules: list, ndim: int) -> NamedSharding:
    """Sharding of a ``[batch, ...]`` array: the batch dim over ``act_batch``'s mesh axes."""
    spec = nn.logical_to_mesh_axes(("act_batch",) + (None,) * (ndim - 1), rules_tuple(rules))
    return NamedSharding(mesh, P(*spec))


def batch_divisor(mesh: Mesh, rules: list) -> int:
    """How many ways the batch dim is split (the global batch must divide by it)."""
    axes = nn.logical_to_mesh_axes(("act_batch",), rules_tuple(rules))[0]
    if axes is None:
        return 1
    axes = (axes,) if isinstance(axes, str) else axes
    return int(np.prod([mesh.shape[a] for a in axes]))


def global_batch(local: dict[str, np.ndarray], mesh: Mesh, rules: list) -> dict[str, jax.Array]:
    """Assemble each process's rows ``[local_batch, ...]`` into global sharded arrays."""
    out = {}
    for k, v in local.items():
        sharding = batch_sharding(mesh, rules, v.ndim)
        out[k] = jax.make_array_from_process_local_data(sharding, v)
    return out


def to_host(tree):
    """NumPy copies of a tree of arrays, also of arrays sharded over other processes' devices.

    ``jax.device_get`` refuses an array that spans devices this process cannot address
    (a batch sharded across hosts); such arrays are gathered from every process.
    """
    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(jax.device_get(x))
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.tree.map(one, tree)
