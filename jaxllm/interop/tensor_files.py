"""Safetensors files read and written with NumPy alone (no PyTorch), memory-mapped on read.

The format: an 8-byte little-endian header length, a JSON header ``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}``, then the raw little-endian tensor bytes.
bfloat16 maps to ``ml_dtypes.bfloat16`` (a JAX dependency). A sharded checkpoint lists its files in
``model.safetensors.index.json`` (``{"weight_map": {name: file}}``).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np

from jaxllm.errors import UserError

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
           "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
INDEX = "model.safetensors.index.json"


def _read_header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise UserError(f"{path}: not a safetensors file (shorter than its 8-byte header length).")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise UserError(f"{path}: not a safetensors file (header length {n}).")
        try:
            return json.loads(f.read(n)), 8 + n
        except ValueError as e:
            raise UserError(f"{path}: not a safetensors file (header is not JSON: {e}).") from None


class TensorFiles:
    """The tensors of a directory's ``*.safetensors`` files (or its sharded index) by name, memory-mapped:
    ``files[name]`` is a read-only NumPy array whose bytes are read only where it is sliced."""

    def __init__(self, directory: str | Path):
        d = Path(directory)
        index = d / INDEX
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            names = sorted(set(weight_map.values()))
            missing = [n for n in names if not (d / n).is_file()]
            if missing:
                raise UserError(f"{index} lists shard {missing[0]}, which is not in {d} "
                                f"({len(missing)} of {len(names)} shards missing); download every shard.")
            files = [d / n for n in names]
        else:
            files = sorted(d.glob("*.safetensors"))
            if not files:
                raise UserError(f"{d}: no *.safetensors file and no {INDEX}; jaxllm reads Hugging Face checkpoints "
                                "in safetensors format (PyTorch .bin files are pickles and are never loaded).")
        self.entries: dict[str, tuple[Path, dict, int]] = {}
        for path in files:
            header, start = _read_header(path)
            size = path.stat().st_size
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                end = start + int(info.get("data_offsets", (0, 0))[1])
                if end > size:
                    raise UserError(f"{path}: truncated: tensor {name} ends at byte {end} but the file has {size} "
                                    "bytes; download or copy it again.")
                self.entries[name] = (path, info, start)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def names(self) -> list[str]:
        return sorted(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name][1]["shape"])

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.entries:
            raise UserError(f"tensor {name} is not in the checkpoint's safetensors files.")
        path, info, start = self.entries[name]
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise UserError(f"{path}: tensor {name} has dtype {info['dtype']}, which jaxllm cannot use "
                            f"(supported: {', '.join(_DTYPES)}).")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end - begin != int(np.prod(shape)) * np.dtype(dtype).itemsize:
            raise UserError(f"{path}: tensor {name} has {end - begin} bytes for shape {shape} {info['dtype']}; "
                            "the file is truncated or corrupt.")
        if end == begin:
            return np.zeros(shape, dtype)
        return np.memmap(path, dtype=dtype, mode="r", offset=start + begin, shape=shape)


def save_file(tensors: dict[str, np.ndarray], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (C-contiguous copies are made where needed) as one safetensors file."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    arrays = []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if a.dtype not in _NAMES:
            raise UserError(f"tensor {name}: dtype {a.dtype} cannot be written to safetensors.")
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((-len(raw)) % 8)  # the data starts 8-byte aligned
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for a in arrays:
            f.write(a.tobytes())
    tmp.replace(path)
