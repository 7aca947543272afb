"""Config loading: YAML with ``base:`` inheritance, ``dotted.key=value`` overrides,
type coercion and validation, all before anything is compiled or written.

Every failure raises `ConfigError` naming the key, the bad value and what is
allowed; the CLI prints it and exits with status 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from jaxllm.config.schema import Config, ObjectiveConfig, objective_class
from jaxllm.errors import ConfigError

_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


# ---------------------------------------------------------------------------
# YAML files and inheritance


def resolve_config_path(name: str) -> Path:
    """A path as given, else relative to the shipped configs/ dir (``pretrain/demo``)."""
    candidates = [Path(name)]
    if not Path(name).is_absolute():
        candidates += [_CONFIG_DIR / name, _CONFIG_DIR / f"{name}.yaml"]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"config file not found: {name!r} (looked at {', '.join(str(c) for c in candidates)}). "
                      "Pass a path to a YAML file or a name under configs/, e.g. pretrain/demo.")


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"{key_node.start_mark.name}:{line}: key {key!r} appears twice in one mapping "
                                  f"(first on line {seen[key]}); keep one of them.")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {e.object[e.start]:#04x}); save the file as UTF-8.") from None
    try:
        data = yaml.load(text, Loader=_make_loader(path))  # a SafeLoader: no Python objects
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}.")
    return data


def _make_loader(path: Path):
    class Loader(_UniqueKeyLoader):
        def __init__(self, stream):
            super().__init__(stream)
            self.name = str(path)
    return Loader


def _merge(base: dict, over: dict) -> dict:
    """Deep-merge ``over`` into ``base``: mappings merge, everything else replaces."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml_tree(path: Path, _seen: tuple = ()) -> dict:
    """Read ``path`` and its ``base:`` files (a path or a list, relative to the file)."""
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"config `base:` cycle: {chain}. Remove one of the base references.")
    data = _read_yaml(path)
    bases = data.pop("base", None) or []
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    for b in bases:
        bpath = (path.parent / b) if not Path(b).is_absolute() else Path(b)
        if not bpath.is_file():
            raise ConfigError(f"{path}: base: {b!r} not found (looked at {bpath}).")
        merged = _merge(merged, load_yaml_tree(bpath, (*_seen, path)))
    return _merge(merged, data)


# ---------------------------------------------------------------------------
# Overrides


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp)


def apply_override(tree: dict, override: str) -> dict:
    """Apply one ``a.b.c=value`` to a raw tree; the value is coerced later by type."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected key=value, e.g. train.steps=100.")
    key, _, raw = override.partition("=")
    key = key.strip()
    key = MOVED_KEYS.get(key, key)
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"override {override!r}: bad key {key!r}.")
    _check_key_path(parts)
    node = tree
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = _Raw(raw)
    return tree


class _Raw(str):
    """A command-line string: coerced by the target field's type, YAML-parsed for lists."""


def _check_key_path(parts: list[str]) -> None:
    cls = Config
    for i, p in enumerate(parts):
        names = _fields(cls)
        if p not in names:
            _unknown_key(".".join(parts[:i]), p, names)
        tp = _field_types(cls)[p]
        if tp is ObjectiveConfig:  # its sections depend on objective.name: `build` checks them
            return
        if _is_section(tp):
            cls = tp
        elif i != len(parts) - 1:
            raise ConfigError(f"{'.'.join(parts[:i + 1])} is a value, not a section; cannot set {'.'.join(parts)}.")


def _unknown_key(prefix: str, key: str, names) -> None:
    full = f"{prefix}.{key}" if prefix else key
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.5)
    hint = f" Did you mean {prefix + '.' if prefix else ''}{close[0]}?" if close else ""
    allowed = ", ".join(sorted(names))
    raise ConfigError(f"unknown config key {full!r}.{hint} Allowed here: {allowed}.")


# ---------------------------------------------------------------------------
# Building typed dataclasses


def _coerce(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "~")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0])
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{key} = {value!r}: expected true or false.")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: expected an integer.")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value.replace("_", ""))
                if f.is_integer():
                    return int(f)
            except ValueError:
                pass
        raise ConfigError(f"{key} = {value!r}: expected an integer.")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: expected a number.")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} = {value!r}: expected a number.")
    if tp is str:
        if isinstance(value, _Raw):
            return str(value)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} = {value!r}: expected a string.")
    if tp is list or origin is list:
        if isinstance(value, _Raw):
            try:
                value = yaml.safe_load(str(value))
            except yaml.YAMLError:
                value = None
            if isinstance(value, str):
                value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{key} = {value!r}: expected a list, e.g. [a, b].")
        return value
    raise ConfigError(f"{key}: unsupported field type {tp!r} (a bug in the schema).")


def _check_meta(key: str, value: Any, f: dataclasses.Field) -> None:
    meta = f.metadata
    if value is None:
        return
    prefixed = any(isinstance(value, str) and value.startswith(p) and len(value) > len(p) for p in meta.get("prefixes", ()))
    if "choices" in meta and value not in meta["choices"] and not prefixed:
        allowed = ", ".join([*map(str, meta["choices"]), *(f"{p}..." for p in meta.get("prefixes", ()))])
        close = difflib.get_close_matches(str(value), [str(c) for c in meta["choices"]], n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ConfigError(f"{key} = {value!r}: not allowed.{hint} Allowed: {allowed}.")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{key} = {value!r}: must be >= {meta['min']}.")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{key} = {value!r}: must be <= {meta['max']}.")


def _yaml_bool_as_choice(key: str, value: Any, tp: Any, f: dataclasses.Field) -> Any:
    """YAML 1.1 reads unquoted on/off/yes/no as booleans: give a string key with such a choice its word back."""
    if tp is not str or not isinstance(value, bool):
        return value
    words = ("on", "yes", "true") if value else ("off", "no", "false")
    for w in words:
        if w in f.metadata.get("choices", ()):
            return w
    raise ConfigError(f"{key} = {value!r}: expected a string; YAML reads an unquoted on/off/yes/no/true/false as a "
                      f"boolean, so quote it ({key.rsplit('.', 1)[-1]}: \"{words[0]}\").")


def build(cls, tree: dict, prefix: str = ""):
    """Turn a raw mapping into dataclass ``cls``, checking keys, types and ranges."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {tree!r}.")
    names = _fields(cls)
    types_ = _field_types(cls)
    for k in tree:
        if k not in names:
            _unknown_key(prefix, str(k), names)
    kwargs = {}
    for name, f in names.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in tree:
            continue
        tp = types_[name]
        if tp is ObjectiveConfig:
            tp = objective_class(_objective_name(tree[name]))
        if _is_section(tp):
            kwargs[name] = build(tp, tree[name] if tree[name] is not None else {}, key)
        else:
            value = _yaml_bool_as_choice(key, tree[name], tp, f)
            value = _coerce(key, value, tp)
            _check_meta(key, value, f)
            kwargs[name] = value
    return cls(**kwargs)


def _objective_name(section) -> str | None:
    name = section.get("name") if isinstance(section, dict) else None
    return str(name) if isinstance(name, (str, _Raw)) else None


# Keys that moved: old run dirs' config.yaml still load, with a note naming the new key.
MOVED_KEYS = {
    "objective.train_on": "objective.sft.train_on",
    "objective.reward.builtin_prompts": "data.builtin.rankings",
    "data.builtin_chars": "data.builtin.chars",
    "data.builtin_seed": "data.builtin.seed",
    "data.builtin_conversations": "data.builtin.conversations",
    "data.builtin_behaviour_chats": "data.builtin.behaviour_chats",
    "data.builtin_heldout": "data.builtin.heldout",
    "data.builtin_noise": "data.builtin.noise",
}


def _pop_path(tree: dict, parts: list[str]):
    node = tree
    for p in parts[:-1]:
        node = node.get(p)
        if not isinstance(node, dict):
            return _MISSING
    return node.pop(parts[-1], _MISSING)


_MISSING = object()


def _is_saved_model_section(model: dict) -> bool:
    """A run dir's config.yaml lists every model key (`dump_yaml`); a user's file names a few."""
    return {"family", "vocab_size", "n_layers", "d_model", "n_heads", "max_seq_len", "norm_eps", "init_std",
            "param_dtype", "dtype", "tie_embeddings", "use_bias", "dropout", "scan_layers"} <= set(model)


def upgrade_tree(tree: dict, where: str) -> dict:
    """Move keys of older configs (``MOVED_KEYS``) to where they live now, saying so on stderr."""
    import sys

    moved = []
    for old, new in MOVED_KEYS.items():
        value = _pop_path(tree, old.split("."))
        if value is _MISSING:
            continue
        moved.append(f"{old} as {new}")
        *parents, last = new.split(".")
        node = tree
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node.setdefault(last, value)
    model = tree.get("model")
    if isinstance(model, dict) and "head_bias" not in model and _is_saved_model_section(model):
        untied = model.get("tie_embeddings") is False or (model.get("tie_embeddings") is None and model.get("family") == "llama")
        biased = model.get("use_bias") is True or (model.get("use_bias") is None and model.get("family", "gpt2") == "gpt2")
        if untied and biased:  # saved before model.head_bias: its untied head was built with a bias
            model["head_bias"] = True
            moved.append("the untied output head's bias as model.head_bias=true")
    if moved:
        print(f"note: {where} was written by an older jaxllm; read {', '.join(moved)} "
              f"(`jaxllm config show {where}` prints it in today's keys).", file=sys.stderr)
    return tree


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for short lists of scalars (``[embed, fsdp]``)."""


def _represent_list(dumper, data):
    flow = all(not isinstance(x, (dict, list)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def dump_yaml(cfg) -> str:
    return yaml.dump(to_dict(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def load_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> Config:
    """Resolve a config file (or the defaults when None) plus overrides into a checked `Config`."""
    from jaxllm.config.validate import validate

    tree = upgrade_tree(load_yaml_tree(resolve_config_path(str(path))), str(path)) if path else {}
    for o in overrides:
        tree = apply_override(tree, o)
    cfg = build(Config, tree)
    validate(cfg)
    return cfg
