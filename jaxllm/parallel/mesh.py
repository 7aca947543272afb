"""Device mesh from config: axes ``data``, ``fsdp``, ``tensor``; one size may be -1."""

from __future__ import annotations

import math

import jax
from jax.sharding import AxisType, Mesh

from jaxllm.config.schema import MeshConfig
from jaxllm.errors import ConfigError

AXES = ("data", "fsdp", "tensor")


def mesh_shape(cfg: MeshConfig, n_devices: int) -> tuple[int, int, int]:
    """Sizes of (data, fsdp, tensor), filling the -1 entry; their product must equal ``n_devices``."""
    sizes = [getattr(cfg, a) for a in AXES]
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if n_devices % known:
            raise ConfigError(f"mesh: the fixed sizes {dict(zip(AXES, sizes))} multiply to {known}, "
                              f"which does not divide the {n_devices} devices; change mesh.data/fsdp/tensor.")
        sizes[sizes.index(-1)] = n_devices // known
    if math.prod(sizes) != n_devices:
        raise ConfigError(f"mesh: data*fsdp*tensor = {'*'.join(map(str, sizes))} = {math.prod(sizes)} but "
                          f"{n_devices} devices are visible; make the product equal {n_devices} (or set one size to -1).")
    return tuple(sizes)


def make_mesh(cfg: MeshConfig, devices=None) -> Mesh:
    """A mesh over ``devices`` (default: all, across processes) with Auto axis types (GSPMD rules)."""
    devices = list(devices) if devices is not None else jax.devices()
    shape = mesh_shape(cfg, len(devices))
    return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def describe(mesh: Mesh) -> str:
    sizes = ", ".join(f"{a}={mesh.shape[a]}" for a in mesh.axis_names)
    kinds = sorted({d.device_kind for d in mesh.devices.flat})
    return (f"mesh ({sizes}) over {mesh.devices.size} {'/'.join(kinds)} device(s), "
            f"{jax.process_count()} process(es), {jax.local_device_count()} local")
