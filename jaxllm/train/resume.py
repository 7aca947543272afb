"""Resuming with a config that differs from the checkpoint's: name every change, refuse those that
break an exact resume, and keep the old config beside the new one.

An exact resume reproduces the uninterrupted run bit for bit; it needs the same data, model math,
objective, optimizer, schedule (``train.steps``) and seeds. Keys below only change where output
goes, how often it is written, or how the same computation is laid out, so they may change freely.
"""

from __future__ import annotations

from pathlib import Path

from jaxllm.errors import UserError

FREE = (
    "run.", "log.", "checkpoint.", "distributed.", "mesh.", "init_from",
    "train.log_every", "train.eval_every", "train.eval_batches", "train.progress", "train.sample_",
    "train.stop_at_step", "train.peak_flops_per_device", "train.nonfinite", "train.max_skipped",
    "model.remat", "model.attention", "model.scan_unroll",
)


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_changes(old: dict, new: dict) -> list[tuple[str, object, object]]:
    """``(dotted key, old value, new value)`` for every key that differs (missing = None)."""
    a, b = flatten(old), flatten(new)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def is_free(key: str) -> bool:
    return any(key == f or (f.endswith((".", "_")) and key.startswith(f)) for f in FREE)


def _saved_config(path: Path) -> dict | None:
    """The run dir's config.yaml as the current schema reads it (old keys moved); None if unreadable."""
    from jaxllm.config import load_config, to_dict

    try:
        return to_dict(load_config(path))
    except UserError:
        return None


def check_resume_config(run_dir: Path, step: int, new: dict, allow: bool, say) -> list[str]:
    """Compare ``new`` with the config that wrote checkpoint ``step``; raise on refused changes.

    Returns the changed keys (empty when none); prints them either way.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return []
    old = _saved_config(path)
    if old is None:
        say(f"note: {path} no longer loads with this version; resuming without comparing configs")
        return []
    changes = config_changes(old, new)
    if not changes:
        return []
    shown = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changes)
    breaking = [k for k, _, _ in changes if not is_free(k)]
    if breaking and not allow:
        raise UserError(f"resuming {run_dir} at step {step} with a changed config: {shown}. "
                        f"{', '.join(breaking)} change the training itself, so the resume would not be exact. "
                        "Put them back, use a new run.dir, or pass --allow-config-change "
                        "(checkpoint.allow_config_change=true) to go on with them.")
    say(f"resuming at step {step} with a changed config: {shown}"
        + (" (allowed by checkpoint.allow_config_change)" if breaking else "")
        + f"; the old config is kept as config.{step}.yaml")
    return [k for k, _, _ in changes]


def keep_old_config(run_dir: Path, step: int) -> None:
    """config.yaml -> config.<step>.yaml (the config that trained up to ``step``), never over an older copy."""
    src, dst = Path(run_dir) / "config.yaml", Path(run_dir) / f"config.{step}.yaml"
    if src.is_file() and not dst.exists():
        dst.write_bytes(src.read_bytes())
