"""Device mesh from config: axes ``data``, ``fsdp``, ``tensor``; one size may be -1.

Each axis may be split into ways inside a slice (ICI on TPU, NVLink on a GPU host) and
ways across slices over the data-centre network: ``mesh.dcn_<axis>`` says how many of the
axis's ways are across. A slice is a TPU slice where devices report one, else a process
(one host), the way MaxText and Levanter lay out multi-slice meshes.
"""

from __future__ import annotations

import math

import jax
import numpy as np
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
    dcn = tuple(getattr(cfg, f"dcn_{a}") for a in AXES)
    if math.prod(dcn) == 1:
        return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)
    return Mesh(_hybrid_devices(shape, dcn, devices), AXES, axis_types=(AxisType.Auto,) * len(AXES))


def _hybrid_devices(shape, dcn, devices) -> np.ndarray:
    """Devices ``[data, fsdp, tensor]`` with each axis's ``dcn`` ways across slices (or processes)."""
    from jax.experimental import mesh_utils

    for a, size, d in zip(AXES, shape, dcn):
        if size % d:
            raise ConfigError(f"mesh.dcn_{a} = {d} does not divide mesh.{a} = {size}; make mesh.{a} a multiple of {d}.")
    slices = {getattr(d, "slice_index", None) for d in devices}
    by_process = None in slices or len(slices) == 1
    granules = len({d.process_index for d in devices}) if by_process else len(slices)
    what = "processes" if by_process else "slices"
    if math.prod(dcn) != granules:
        raise ConfigError(f"mesh.dcn_data*dcn_fsdp*dcn_tensor = {'*'.join(map(str, dcn))} = {math.prod(dcn)} but the "
                          f"job has {granules} {what}; make the product {granules} (or all 1 for a plain mesh).")
    ici = tuple(size // d for size, d in zip(shape, dcn))
    return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, process_is_granule=by_process)


def describe(mesh: Mesh) -> str:
    """The start-up line: axis sizes, device kind, processes and which devices each drives."""
    from jaxllm.parallel.distributed import process_devices

    sizes = ", ".join(f"{a}={mesh.shape[a]}" for a in mesh.axis_names)
    kinds = sorted({d.device_kind for d in mesh.devices.flat})
    line = (f"mesh ({sizes}) over {mesh.devices.size} {'/'.join(kinds)} device(s), "
            f"{jax.process_count()} process(es), {jax.local_device_count()} local")
    if jax.process_count() > 1:
        line += f" [{process_devices(mesh)}]"
    return line


def process_grid(mesh: Mesh, max_rows: int = 16) -> str:
    """Which process drives each device: one row per ``data`` index, columns over ``fsdp`` x ``tensor``.

    With ``mesh.dcn_data`` = number of processes each row belongs to one process (only the
    data-parallel gradient all-reduce crosses hosts); with ``dcn_fsdp`` the processes alternate along a row.
    """
    procs = np.vectorize(lambda d: d.process_index)(mesh.devices).reshape(mesh.shape["data"], -1)
    lines = ["process of each device (rows: data; columns: fsdp x tensor):"]
    for i, row in enumerate(procs[:max_rows]):
        lines.append(f"  data {i}: " + " ".join(str(p) for p in row))
    if procs.shape[0] > max_rows:
        lines.append(f"  ... {procs.shape[0] - max_rows} more rows")
    return "\n".join(lines)
