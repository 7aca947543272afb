"""Sweep files: a base config, a grid and/or a list of override sets, and seeds -> named runs.

    # configs/sweep/lr_size.yaml
    base: pretrain/demo            # what `jaxllm train` takes: a config name or a path
    dir: runs/sweep-lr-size        # each run gets <dir>/<name>
    set: {train.steps: 200}        # overrides for every run
    grid:                          # every combination
      optimizer.lr: [1.0e-3, 3.0e-3]
      model.n_layers: [2, 4]
    runs:                          # and/or explicit override sets (each crossed with the grid)
      - {model.d_model: 128}
    seeds: [0, 1]                  # each combination once per seed (the config's `seed`)

Run names come from the keys that vary: ``lr=0.001,n_layers=2,seed=0`` (a key's last component,
or the whole key where two would clash).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import yaml

from jaxllm.errors import ConfigError

_KEYS = {"base", "dir", "set", "grid", "runs", "seeds", "description"}


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    overrides: dict        # key -> value: this run's varied settings (seed included when swept)
    dir: Path


@dataclasses.dataclass(frozen=True)
class Sweep:
    path: Path
    base: str
    dir: Path
    common: dict           # `set:` overrides
    varied: list[str]      # keys whose value differs between runs (seed last, if swept)
    runs: list[Run]

    def cli_overrides(self, run: Run) -> list[str]:
        """``key=value`` strings for `jaxllm train BASE ...` (YAML scalars, so types survive)."""
        items = {**self.common, **run.overrides, "run.dir": str(run.dir)}
        return [f"{k}={_scalar(v)}" for k, v in items.items()]


def _scalar(v) -> str:
    if isinstance(v, (list, dict)):
        return yaml.safe_dump(v, default_flow_style=True).strip()
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "null"}[v]
    return str(v)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return _scalar(v)


def _short_names(keys: list[str]) -> dict[str, str]:
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def run_name(overrides: dict, varied: list[str]) -> str:
    short = _short_names(varied)
    parts = [f"{short[k]}={_fmt(overrides[k])}" for k in varied if k in overrides]
    name = ",".join(parts) or "base"
    return re.sub(r"[^\w.,=+-]", "_", name)


def _mapping(value, what: str, where: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, list):  # ["a.b=1", ...]
        out = {}
        for item in value:
            if not isinstance(item, str) or "=" not in item:
                raise ConfigError(f"{where}: {what} item {item!r} is not key=value.")
            k, v = item.split("=", 1)
            out[k.strip()] = v  # as on the command line: the config loader parses it
        return out
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {what} must be a mapping of key: value (or a list of key=value).")
    return dict(value)


def load_sweep(path: str | Path) -> Sweep:
    """Read and expand a sweep file; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}).") from None
    where = str(path)
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; a sweep file has {', '.join(sorted(_KEYS))}.")
    if "base" not in data:
        raise ConfigError(f"{where}: no `base:` (the config every run starts from, e.g. pretrain/demo).")
    grid = _mapping(data.get("grid"), "grid", where)
    for k, vs in grid.items():
        if not isinstance(vs, list) or not vs:
            raise ConfigError(f"{where}: grid.{k} must be a non-empty list of values.")
    runs = data.get("runs") or [{}]
    if not isinstance(runs, list):
        raise ConfigError(f"{where}: runs must be a list of override sets.")
    runs = [_mapping(r, f"runs[{i}]", where) for i, r in enumerate(runs)]
    seeds = data.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds)):
        raise ConfigError(f"{where}: seeds must be a list of integers.")
    combos = []
    for values in itertools.product(*grid.values()):
        for extra in runs:
            for seed in seeds or [None]:
                o = {**dict(zip(grid, values)), **extra}
                if seed is not None:
                    o["seed"] = seed
                combos.append(o)
    keys = list(dict.fromkeys(k for o in combos for k in o))
    varied = [k for k in keys if len({repr(o.get(k)) for o in combos}) > 1 and k != "seed"]
    if seeds and len(seeds) > 1:
        varied.append("seed")
    sweep_dir = Path(data.get("dir") or f"runs/sweep-{path.stem}")
    out, seen = [], {}
    for o in combos:
        name = run_name(o, varied)
        if name in seen:
            raise ConfigError(f"{where}: two runs would both be named {name!r} (the same settings twice).")
        seen[name] = True
        out.append(Run(name, o, sweep_dir / name))
    return Sweep(path, str(data["base"]), sweep_dir, _mapping(data.get("set"), "set", where), varied, out)
