"""From config to token streams: documents, held-out split, tokenizer, packing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax

from jaxllm.config.schema import Config
from jaxllm.data.packing import TokenStream, build_stream
from jaxllm.data.sources import load_documents, split_documents
from jaxllm.data.tokenizer import Tokenizer, train_tokenizer


@dataclasses.dataclass
class Corpus:
    train_docs: list[str]
    eval_docs: list[str]


def load_corpus(cfg: Config) -> Corpus:
    """The configured documents split into train/eval (raises UserError on bad data)."""
    docs = load_documents(cfg.data)
    train, evald = split_documents(docs, cfg.data.eval_fraction, cfg.data.builtin_seed)
    return Corpus(train, evald)


def get_tokenizer(cfg: Config, run_dir: Path | None, train_docs: list[str]) -> Tokenizer:
    """The configured tokenizer, else the run dir's cached one, else one trained now (and cached)."""
    tc = cfg.data.tokenizer
    if tc.path:
        return Tokenizer.load(tc.path)
    cached = run_dir / "tokenizer.model" if run_dir else None
    if cached and cached.is_file():
        return Tokenizer.load(cached)
    tok = train_tokenizer(train_docs, tc.vocab_size, tc.model_type, tc.train_chars)
    if cached and jax.process_index() == 0:
        tok.save(cached)
    return tok


def tokenize(tok: Tokenizer, docs: list[str]) -> TokenStream:
    return build_stream(tok.encode(docs))
