"""Where records come from: one `Source` per ``data.source``, asked for the kind of record an objective
formats (documents, conversations, rankings, prompts).

``builtin`` is the generated world (`jaxllm.world.source`); ``text``, ``jsonl`` and ``tfds:NAME`` are
the user's files (`FileSource`). The loaders of each objective (`prepare`, `sft_data`, `pref_data`,
`prompt_data`) ask `open_source` and never branch on the source.
"""

from __future__ import annotations

import dataclasses

from typing import Protocol

import numpy as np

from jaxllm.config.schema import DataConfig
from jaxllm.data.readers import BadRecords, expand_paths, read_jsonl, read_text
from jaxllm.errors import UserError


class Source(Protocol):
    """Records of each kind, in a fixed order, each with a report (skipped records and the like)."""

    def documents(self) -> tuple[list[str], dict]: ...                         # pre-training text

    def conversations(self) -> tuple[list, dict]: ...                          # SFT chats (lists of Message)

    def rankings(self) -> tuple[list, dict]: ...                               # `pref_data.Ranking`s, best first

    def prompts(self, n_eval: int) -> tuple[list, list, dict]: ...             # rollout prompts: train, held out

    def tasks(self, n_eval: int) -> tuple[list, list, dict]: ...               # checkable task records: train, held out


class FileSource:
    """The user's files (``data.paths``: text or JSONL) or a TFDS dataset (``data.source: tfds:NAME``)."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg

    def documents(self) -> tuple[list[str], dict]:
        cfg = self.cfg
        bad = BadRecords(cfg.on_error)
        if cfg.source.startswith("tfds:"):
            from jaxllm.data.tfds_source import read_tfds
            return read_tfds(cfg.source[len("tfds:"):], cfg.data_dir, cfg.tfds_split, cfg.field, bad), bad.report()
        docs = []
        for f in expand_paths(cfg.paths):
            if f.stat().st_size == 0:
                bad(f"{f}: empty file")
                continue
            docs += read_text(f, bad) if cfg.source == "text" else read_jsonl(f, cfg.field, bad)
        if not docs:
            raise UserError(f"data.paths {cfg.paths} hold no documents"
                            + (f" ({bad.count} bad records skipped, e.g. {bad.examples[0]})" if bad.count else "") + ".")
        return docs, bad.report()

    def conversations(self) -> tuple[list, dict]:
        from jaxllm.data.chat_sources import read_chat_files
        c = self.cfg
        return read_chat_files(c.paths, c.chat_format, c.field, c.on_error)

    def rankings(self) -> tuple[list, dict]:
        from jaxllm.data.pref_data import read_ranking_files
        return read_ranking_files(self.cfg.paths, self.cfg.on_error)

    def prompts(self, n_eval: int) -> tuple[list, list, dict]:
        """The first ``n_eval`` (at most a fifth) are held out."""
        from jaxllm.data.prompt_data import read_prompt_files
        prompts, report = read_prompt_files(self.cfg.paths, self.cfg.on_error)
        n = min(n_eval, len(prompts) // 5)
        return prompts[n:], prompts[:n], report

    def tasks(self, n_eval: int) -> tuple[list, list, dict]:
        """Task records (question, answer); the first ``n_eval`` (at most a fifth) are held out."""
        from jaxllm.data.task_data import read_task_files
        records, report = read_task_files(self.cfg.paths, self.cfg.on_error)
        n = min(n_eval, len(records) // 5)
        return records[n:], records[:n], report


def open_source(cfg: DataConfig) -> Source:
    if cfg.source == "builtin":
        from jaxllm.world.source import BuiltinSource  # the one way from the data pipeline into the world
        return BuiltinSource(cfg.builtin)
    return FileSource(cfg)


def eval_source(cfg: DataConfig) -> Source:
    """The files of ``data.eval_paths`` as a source of the same records (text for *.txt, else JSONL)."""
    text = all(str(p).endswith(".txt") for p in cfg.eval_paths)
    return FileSource(dataclasses.replace(cfg, source="text" if text else "jsonl", paths=list(cfg.eval_paths)))


def train_and_held_out(cfg: DataConfig, items: list, read) -> tuple[list, list]:
    """``(train, held out)``: every item and what ``read(source)`` gives from ``data.eval_paths``, when set;
    else a seeded ``data.eval_fraction`` split of ``items``."""
    if cfg.eval_paths:
        held, _ = read(eval_source(cfg))
        return items, held
    return split_documents(items, cfg.eval_fraction, cfg.split_seed)


def load_documents(cfg: DataConfig) -> tuple[list[str], dict]:
    """All documents of the configured source in a fixed order, and a report (skipped records)."""
    return open_source(cfg).documents()


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
