"""Objective names -> their `ObjectiveSpec`, for built-ins and plugins alike.

A built-in objective is any module of this package that exports ``SPEC``: adding one is adding the
file. A plugin is named ``package.module:ATTR`` (``objective.name: my_pkg.my_loss:SPEC``) and is
imported from the user's own code (on ``sys.path``, or a ``.py`` path: ``path/to/my_loss.py:SPEC``).

The config loader asks this module for the specs by name at load time: it is the one way in from
``config/`` to the objectives, and imports nothing from ``jaxllm`` at module level but the errors.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

from jaxllm.errors import ConfigError

_PACKAGE = "jaxllm.objectives"


@functools.cache
def builtin_specs() -> dict:
    """``{name: spec}`` of every module in this package that exports ``SPEC``, sorted by name."""
    import jaxllm.objectives as pkg

    found = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"{_PACKAGE}.{info.name}")
        spec = getattr(mod, "SPEC", None)
        if spec is not None:
            found[spec.name] = spec
    return dict(sorted(found.items()))


def _import_module(target: str, name: str):
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ConfigError(f"objective.name = {name!r}: no file {path}.")
        mod_name = f"jaxllm_plugin_{path.stem}"
        if mod_name in sys.modules:
            return sys.modules[mod_name]
        loader = importlib.util.spec_from_file_location(mod_name, path)
        mod = importlib.util.module_from_spec(loader)
        sys.modules[mod_name] = mod
        loader.loader.exec_module(mod)
        return mod
    return importlib.import_module(target)


@functools.cache
def get_spec(name: str):
    """The spec of a built-in name or of a ``module:ATTR`` plugin; errors list what is allowed."""
    from jaxllm.objectives.base import ObjectiveSpec

    builtins = builtin_specs()
    if name in builtins:
        return builtins[name]
    if ":" not in name:
        raise ConfigError(f"objective.name = {name!r}: unknown objective. Built in: {', '.join(builtins)}; "
                          "or your own as 'package.module:SPEC' (or 'path/to/file.py:SPEC').")
    target, _, attr = name.rpartition(":")
    try:
        mod = _import_module(target, name)
    except ImportError as e:
        raise ConfigError(f"objective.name = {name!r}: cannot import {target!r} ({e}). Put its package on "
                          "PYTHONPATH (or give a .py path).") from None
    spec = getattr(mod, attr, None)
    if not isinstance(spec, ObjectiveSpec):
        raise ConfigError(f"objective.name = {name!r}: {target} has no ObjectiveSpec named {attr!r} "
                          f"(found {type(spec).__name__}).")
    if spec.name in builtins:
        raise ConfigError(f"objective.name = {name!r}: its spec is named {spec.name!r}, which a built-in objective "
                          "already uses; give it its own name.")
    return spec


def known_specs(name: str | None = None) -> dict:
    """Every built-in spec, plus the plugin ``name`` when it is one: the sections of ``objective``."""
    specs = dict(builtin_specs())
    if name is not None:
        spec = get_spec(name)
        specs[spec.name] = spec
    return specs
