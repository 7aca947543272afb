"""Run directories: the self-contained folder a training run writes (config.yaml, tokenizer.model,
checkpoints/<step>, metrics.jsonl). Any of three paths leads into one: the run dir, its checkpoints/,
or checkpoints/<step>."""

from __future__ import annotations

from pathlib import Path

from jaxllm.errors import UserError


def run_dir_holding(path: str | Path, name: str) -> Path | None:
    """The run dir that ``path`` (a run dir, its checkpoints/ or checkpoints/<step>) points into, if it holds ``name``."""
    p = Path(path)
    return next((d for d in (p, p.parent, p.parent.parent) if (d / name).is_file()), None)


def find_run_dir(path: str | Path) -> Path:
    """The run dir (with its config.yaml) that ``path`` points into; a `UserError` naming the path otherwise."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path}: no such checkpoint. Give a run dir (with config.yaml), its checkpoints/ or checkpoints/<step>.")
    run_dir = run_dir_holding(p, "config.yaml")
    if run_dir:
        return run_dir
    raise UserError(f"{path}: no config.yaml in it or above it; give the run dir that training wrote.")
