"""From config to token streams: documents, held-out split, tokenizer, tokens.

Two ways in: tokenize the configured source now (small data, the built-in
corpus), or read what `jaxllm data prepare` wrote (``data.source=prepared``),
memory-mapped, without re-tokenizing.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax

from jaxllm.config.schema import Config
from jaxllm.data.packing import TokenStream, build_stream
from jaxllm.data.prepared import read_prepared, write_prepared
from jaxllm.data.sources import eval_source, load_documents, split_documents
from jaxllm.data.tokenizer import TOKENIZER_FILES, Tokenizer, tokenizer_file, train_tokenizer
from jaxllm.errors import UserError


@dataclasses.dataclass
class Corpus:
    train_docs: list[str]
    eval_docs: list[str]
    report: dict  # skipped records etc.


@dataclasses.dataclass
class PretrainData:
    tokenizer: Tokenizer
    streams: dict[str, TokenStream]  # "train", and "eval" when there is a held-out split
    stats: dict


def _pieces(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at the last blank line, else line end,
    else space before the limit (the separator stays with the piece before it)."""
    out = []
    while len(text) > limit:
        window = text[:limit]
        for sep in ("\n\n", "\n", " "):
            cut = window.rfind(sep, limit // 2)
            if cut >= 0:
                cut += len(sep)
                break
        else:
            cut = limit
        out.append(text[:cut])
        text = text[cut:]
    return out + ([text] if text.strip() else [])


def cut_long_documents(docs: list[str], limit: int) -> tuple[list[str], dict]:
    """Documents over ``limit`` characters -> pieces (`data.max_document_chars`); what was cut, for the report."""
    out, n, pieces = [], 0, 0
    for d in docs:
        if len(d) <= limit:
            out.append(d)
            continue
        parts = _pieces(d, limit)
        out += parts
        n, pieces = n + 1, pieces + len(parts)
    return out, {"documents": n, "pieces": pieces, "limit": limit}


def load_corpus(cfg: Config) -> Corpus:
    """The configured documents split into train/eval (raises UserError on bad data)."""
    docs, report = _prepared_documents(cfg, load_documents(cfg.data))
    if cfg.data.eval_paths:  # a held-out file, cut and cleaned as the training documents are
        evald, _ = _prepared_documents(cfg, eval_source(cfg.data).documents())
        return Corpus(docs, evald, report)
    train, evald = split_documents(docs, cfg.data.eval_fraction, cfg.data.split_seed)
    return Corpus(train, evald, report)


def _prepared_documents(cfg: Config, loaded: tuple[list[str], dict]) -> tuple[list[str], dict]:
    """Documents cut (`data.max_document_chars`) and cleaned (`data.clean`), with the report."""
    docs, report = loaded
    if cfg.data.max_document_chars:
        docs, cut = cut_long_documents(docs, cfg.data.max_document_chars)
        if cut["documents"]:
            report["cut_documents"] = cut
    if cfg.data.clean.enabled:
        from jaxllm.data.clean import clean_documents
        docs, report["cleaning"] = clean_documents(docs, cfg.data.clean)
        if not docs:
            raise UserError("data.clean removed every document; loosen data.clean thresholds (see the report in `jaxllm data clean`).")
    return docs, report


def init_from_tokenizer(init_from: str | None) -> Path | None:
    """The tokenizer (tokenizer.model or tokenizer.json) of the run that ``init_from`` (run dir, checkpoints/ or
    checkpoints/<step>) points into."""
    if not init_from:
        return None
    from jaxllm.run_dir import run_dir_holding
    for name in TOKENIZER_FILES:
        run_dir = run_dir_holding(init_from, name)
        if run_dir:
            return run_dir / name
    adapter = Path(init_from) / "adapter_config.json"  # a PEFT adapter without its own tokenizer: its base's
    if adapter.is_file():
        import json
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        return init_from_tokenizer(base) if base and Path(base).is_dir() else None
    return None


def get_tokenizer(cfg: Config, run_dir: Path | None, train_docs: list[str]) -> Tokenizer:
    """The configured tokenizer, else init_from's, else the run dir's cached one, else one trained now (in memory)."""
    tc = cfg.data.tokenizer
    if tc.path:
        return Tokenizer.load(tc.path)
    inherited = init_from_tokenizer(cfg.init_from)
    if inherited:
        return Tokenizer.load(inherited)
    if cfg.init_from:
        raise UserError(f"init_from = {cfg.init_from!r} has no tokenizer.model or tokenizer.json beside it; set "
                        "data.tokenizer.path to the tokenizer that checkpoint was trained with.")
    cached = tokenizer_file(run_dir) if run_dir else None
    if cached:
        return Tokenizer.load(cached)
    return train_tokenizer(train_docs, tc.vocab_size, tc.model_type, tc.train_chars, tc.kind)


def tokenize(tok: Tokenizer, docs: list[str]) -> TokenStream:
    return build_stream(tok.encode(docs), tok.bos_id, tok.eos_id)


def tokenize_splits(tok: Tokenizer, corpus: Corpus) -> dict[str, TokenStream]:
    """``{"train": ..., "eval": ...}`` (eval only when documents were held out)."""
    streams = {"train": tokenize(tok, corpus.train_docs)}
    if corpus.eval_docs:
        streams["eval"] = tokenize(tok, corpus.eval_docs)
    return streams


def load_pretrain_data(cfg: Config, run_dir: Path | None) -> PretrainData:
    """Token streams for pre-training: from data.prepared_dir, or tokenized from the source now."""
    if cfg.data.source == "prepared":
        streams, tok, stats = read_prepared(cfg.data.prepared_dir)
        if cfg.data.tokenizer.path and Tokenizer.load(cfg.data.tokenizer.path).model_proto != tok.model_proto:
            raise UserError(f"data.tokenizer.path = {cfg.data.tokenizer.path!r} differs from the tokenizer the prepared data "
                            f"in {cfg.data.prepared_dir} was made with; drop data.tokenizer.path or re-run prepare with it.")
        if "train" not in streams:
            raise UserError(f"{cfg.data.prepared_dir}: no train split; re-run `jaxllm data prepare`.")
        return PretrainData(tok, streams, stats)
    corpus = load_corpus(cfg)
    tok = get_tokenizer(cfg, run_dir, corpus.train_docs)
    report = {**corpus.report, **({"tokenizer_training": tok.trained_on} if tok.trained_on else {})}
    return PretrainData(tok, tokenize_splits(tok, corpus), report)


def prepare_dataset(cfg: Config) -> dict:
    """`jaxllm data prepare`: documents -> split -> tokenizer -> tokens on disk, with statistics."""
    if not cfg.data.prepared_dir:
        raise UserError("data.prepared_dir is not set: where should the prepared dataset go? e.g. data.prepared_dir=data/mine")
    if cfg.data.source == "prepared":
        raise UserError("data.source = 'prepared' is what `prepare` writes; give the raw source (builtin, text, jsonl, tfds:...).")
    t0 = time.perf_counter()
    corpus = load_corpus(cfg)
    t_read = time.perf_counter() - t0
    tok = get_tokenizer(cfg, None, corpus.train_docs)
    t1 = time.perf_counter()
    streams = tokenize_splits(tok, corpus)
    chars = {"train": sum(map(len, corpus.train_docs)), "eval": sum(map(len, corpus.eval_docs))}
    stats = {
        "source": cfg.data.source if cfg.data.source not in ("text", "jsonl") else f"{cfg.data.source}:{cfg.data.paths}",
        "characters": chars,
        **corpus.report,
        **({"tokenizer_training": tok.trained_on} if tok.trained_on else {}),
        "seconds": {"read": round(t_read, 3), "tokenize": round(time.perf_counter() - t1, 3)},
    }
    if jax.process_index() == 0:
        stats = write_prepared(Path(cfg.data.prepared_dir), streams, tok, stats)
    return stats
