"""Prepared (tokenized) datasets on disk, read by memory map without re-tokenizing.

Layout of a prepared directory::

    tokenizer.model            the SentencePiece model the tokens were made with
    stats.json                 format version, source, documents/tokens/chars per split, cleaning report
    train/tokens.npy           [N] uint16 (vocab <= 65536) or uint32: BOS doc EOS BOS doc EOS ...
    train/doc_starts.npy       [D] int64: stream offset of each document's BOS (the index)
    eval/tokens.npy, eval/doc_starts.npy

Each process memory-maps the files and touches only the pages of its own rows,
so N hosts share one copy on a shared filesystem.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jaxllm.data.packing import TokenStream
from jaxllm.data.tokenizer import Tokenizer, tokenizer_file
from jaxllm.errors import UserError

FORMAT_VERSION = 1
SPLITS = ("train", "eval")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def write_split(directory: Path, stream: TokenStream, vocab_size: int) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    tokens = np.asarray(stream.tokens).astype(token_dtype(vocab_size))
    np.save(directory / "tokens.npy", tokens)
    np.save(directory / "doc_starts.npy", np.asarray(stream.doc_starts, np.int64))
    return {"documents": int(len(stream.doc_starts)), "tokens": int(len(tokens)), "bytes": int(tokens.nbytes)}


def read_split(directory: Path) -> TokenStream:
    try:
        tokens = np.load(directory / "tokens.npy", mmap_mode="r")
        starts = np.load(directory / "doc_starts.npy", mmap_mode="r")
    except FileNotFoundError as e:
        raise UserError(f"prepared data incomplete: {e.filename} is missing; re-run `jaxllm data prepare`.") from None
    except ValueError as e:
        raise UserError(f"prepared data in {directory} is unreadable ({e}); re-run `jaxllm data prepare`.") from None
    if len(starts) and (starts[0] != 0 or starts[-1] >= len(tokens)):
        raise UserError(f"{directory}: doc_starts.npy does not index tokens.npy (torn write?); re-run `jaxllm data prepare`.")
    return TokenStream(tokens, np.asarray(starts))


def write_prepared(out_dir: Path, streams: dict[str, TokenStream], tokenizer: Tokenizer, stats: dict) -> dict:
    """Write every split, the tokenizer and stats.json (last, so its presence marks a complete write)."""
    out_dir = Path(out_dir)
    (out_dir / "stats.json").unlink(missing_ok=True)
    split_stats = {name: write_split(out_dir / name, s, tokenizer.vocab_size) for name, s in streams.items()}
    tokenizer.save(out_dir / tokenizer.filename)
    full = {"format_version": FORMAT_VERSION, "vocab_size": tokenizer.vocab_size, "splits": split_stats, **stats}
    (out_dir / "stats.json").write_text(json.dumps(full, indent=2))
    return full


def read_prepared(out_dir: str | Path) -> tuple[dict[str, TokenStream], Tokenizer, dict]:
    out_dir = Path(out_dir)
    stats_path = out_dir / "stats.json"
    if not stats_path.is_file():
        raise UserError(f"data.prepared_dir = {str(out_dir)!r} holds no prepared dataset (no stats.json); "
                        "run `jaxllm data prepare CONFIG` first, or point data.prepared_dir at its output.")
    stats = json.loads(stats_path.read_text())
    if stats.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{stats_path}: format version {stats.get('format_version')}, this jaxllm reads "
                        f"{FORMAT_VERSION}; re-run `jaxllm data prepare`.")
    tokenizer = Tokenizer.load(tokenizer_file(out_dir) or out_dir / "tokenizer.model")
    if tokenizer.vocab_size != stats["vocab_size"]:
        raise UserError(f"{out_dir}: {Path(tokenizer.name).name} has {tokenizer.vocab_size} pieces but the tokens were written "
                        f"with {stats['vocab_size']}; re-run `jaxllm data prepare`.")
    streams = {name: read_split(out_dir / name) for name in SPLITS if (out_dir / name).is_dir()}
    return streams, tokenizer, stats
