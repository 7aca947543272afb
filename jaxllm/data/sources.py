"""Document sources: the built-in corpus, plain-text files and JSONL files."""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path

import numpy as np

from jaxllm.config.schema import DataConfig
from jaxllm.errors import UserError


def _expand(paths: list[str]) -> list[Path]:
    files = []
    for p in paths:
        hits = sorted(glob.glob(p)) if any(ch in p for ch in "*?[") else [p]
        if not hits:
            raise UserError(f"data.paths: {p!r} matches no file; check the pattern or the working directory.")
        for h in hits:
            if not Path(h).is_file():
                raise UserError(f"data.paths: file not found: {h}.")
            files.append(Path(h))
    return files


def read_text(path: Path) -> list[str]:
    """Documents are blocks separated by blank (or whitespace-only) lines; none means one document."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e}); convert it or clean it first.") from None
    blocks = [b.strip() for b in re.split(r"\n[ \t\r]*\n", text)]  # "blank" lines may hold spaces (WikiText)
    return [b for b in blocks if b]


def read_jsonl(path: Path, field: str) -> list[str]:
    docs = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{i}: not valid JSON ({e.msg}); fix or remove that line.") from None
            if not isinstance(rec, dict) or field not in rec:
                keys = ", ".join(rec) if isinstance(rec, dict) else type(rec).__name__
                raise UserError(f"{path}:{i}: no field {field!r} (found: {keys}); set data.field to the text field.")
            if not isinstance(rec[field], str):
                raise UserError(f"{path}:{i}: field {field!r} is {type(rec[field]).__name__}, expected a string.")
            docs.append(rec[field])
    return docs


def load_documents(cfg: DataConfig) -> list[str]:
    """All documents of the configured source, in a fixed order."""
    if cfg.source == "builtin":
        from jaxllm.data.corpus import generate_documents
        return generate_documents(cfg.builtin_chars, cfg.builtin_seed)
    files = _expand(cfg.paths)
    docs = []
    for f in files:
        docs += read_text(f) if cfg.source == "text" else read_jsonl(f, cfg.field)
    if not docs:
        raise UserError(f"data.paths {cfg.paths} hold no documents.")
    return docs


def split_documents(docs: list[str], eval_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Hold out a seeded random ``eval_fraction`` of documents (at least one when the fraction > 0)."""
    n_eval = int(round(len(docs) * eval_fraction))
    if eval_fraction > 0:
        n_eval = max(1, n_eval)
    if n_eval >= len(docs):
        raise UserError(f"only {len(docs)} documents: too few to hold out {eval_fraction:.0%} for evaluation; "
                        "add data or lower data.eval_fraction.")
    order = np.random.default_rng(seed).permutation(len(docs))
    held = set(order[:n_eval].tolist())
    train = [d for i, d in enumerate(docs) if i not in held]
    evald = [d for i, d in enumerate(docs) if i in held]
    return train, evald
