"""Cleaning with datatrove: repair, strip markup and boilerplate, filter, de-duplicate.

Steps, in order, each switchable in ``data.clean`` and each reported (documents and
characters removed):

1. ``ftfy``        Unicode repair (mojibake) and NFC normalisation (datatrove's FTFYFormatter)
2. ``markup``      HTML/XML to text: tags, scripts and styles dropped, entities decoded
3. ``boilerplate`` lines matching boilerplate patterns removed; C4's line rules (javascript,
                   lorem ipsum, curly-bracket templates, policy lines)
4. ``length``      documents outside [min_chars, max_chars] dropped
   ``language``    (optional) documents not in ``languages`` by a local fastText model dropped
5. ``repetition``  Gopher repetition rules (thresholds x repetition_scale; 1.0 = published)
6. ``quality``     Gopher quality rules (word counts, symbols, alphabetic words, stop words)
7. ``fineweb``     FineWeb quality rules (line punctuation, short lines, duplicated chars)
8. ``exact_dedup`` exact duplicates (xxhash of whitespace-normalised text) dropped
9. ``minhash``     near-duplicates (datatrove's 4-stage MinHash; Jaccard threshold about
                   (1/buckets)^(1/hashes_per_bucket))

Word-level rules use a small regex word tokenizer instead of spaCy (same results on English,
~4x faster, no 126 MB download). Stages run in this process, chained as datatrove's executor
chains them per task (no fork beside JAX); nothing is fetched from the network: language ID
reads a local fastText model. For corpora larger than one process, `clean_dist` runs the same
steps over JSONL shards with datatrove's executors (local workers, SLURM, Ray).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from jaxllm.config.schema import CleanConfig
from jaxllm.errors import UserError


def _datatrove():
    try:
        import datatrove  # noqa: F401
    except ImportError:
        raise UserError("data.clean needs datatrove: pip install -e . (it is a dependency) or "
                        "pip install 'datatrove>=0.10,<0.11' orjson 'xxhash<4' ftfy regex fasteners tokenizers") from None


def _language_filter(cfg: CleanConfig):
    """Language ID as datatrove's LanguageFilter does it, with the fastText model read from a local file.

    (datatrove's own filter downloads its model and insists on the fasttext-numpy2-wheel distribution,
    whose training gives NaN on this machine; fasttext-community provides the same `fasttext` module.)
    """
    from datatrove.pipeline.filters.base_filter import BaseFilter
    from datatrove.utils.lid import FastTextLID

    path = Path(cfg.language_model).expanduser()
    if not path.is_file():
        raise UserError(f"data.clean.language_model = {cfg.language_model!r}: file not found.")
    try:
        from fasttext.FastText import _FastText
    except ImportError:
        raise UserError("data.clean.language_id needs fastText: pip install -e '.[langid]'.") from None

    class LocalFastTextLID(FastTextLID):
        @property
        def model(self):
            if self._model is None:
                self._model = _FastText(str(path))
            return self._model

    class LocalLanguageFilter(BaseFilter):
        name = "🌍 Language ID (local model)"

        def __init__(self, languages: list[str], threshold: float):
            super().__init__()
            self.threshold = threshold
            self.lid = LocalFastTextLID(languages)

        def filter(self, doc) -> bool:
            (lang, score), lang_scores = self.lid.predict(doc)
            doc.metadata["language"], doc.metadata["language_score"] = lang, score
            return any(s > self.threshold for s in lang_scores.values())

    return LocalLanguageFilter(list(cfg.languages), cfg.language_threshold)


def _repetition_filter(cfg: CleanConfig, words):
    from datatrove.pipeline.filters import GopherRepetitionFilter
    k = cfg.repetition_scale
    return GopherRepetitionFilter(
        dup_line_frac=min(0.3 * k, 1.0), dup_para_frac=min(0.3 * k, 1.0), dup_line_char_frac=min(0.2 * k, 1.0),
        dup_para_char_frac=min(0.2 * k, 1.0), top_n_grams=tuple((n, min(f * k, 1.0)) for n, f in ((2, 0.2), (3, 0.18), (4, 0.16))),
        dup_n_grams=tuple((n, min(f * k, 1.0)) for n, f in ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))),
        language=words)


def filter_steps(cfg: CleanConfig) -> tuple[list, list[str]]:
    """The enabled per-document steps (1-7), each followed by a Count, and their labels."""
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter
    from datatrove.pipeline.formatters import FTFYFormatter

    from jaxllm.data import clean_steps as m
    words = m.RegexWords()
    steps = [
        ("ftfy", cfg.ftfy, lambda: FTFYFormatter(normalization="NFC")),
        ("markup", cfg.markup, m.MarkupToText),
        ("boilerplate", cfg.boilerplate, lambda: m.BoilerplateLines(cfg.boilerplate_patterns)),
        ("boilerplate_c4", cfg.boilerplate, lambda: C4QualityFilter(
            split_paragraph=True, remove_citations=False, filter_no_terminal_punct=False, min_num_sentences=-1,
            min_words_per_line=-1, max_word_length=1000, language=words)),
        ("length", cfg.length, lambda: m.LengthFilter(cfg.min_chars, cfg.max_chars)),
        ("language", cfg.language_id, lambda: _language_filter(cfg)),
        ("repetition", cfg.repetition, lambda: _repetition_filter(cfg, words)),
        ("quality", cfg.quality, lambda: GopherQualityFilter(
            min_doc_words=cfg.quality_min_words, max_doc_words=cfg.quality_max_words,
            min_avg_word_length=cfg.quality_min_avg_word_length or None, max_symbol_word_ratio=cfg.quality_max_symbol_ratio,
            max_non_alpha_words_ratio=cfg.quality_min_alpha_words, max_bullet_lines_ratio=cfg.quality_max_bullet_lines,
            min_stop_words=cfg.quality_min_stop_words, language=words)),
        ("fineweb", cfg.fineweb, lambda: FineWebQualityFilter(language=words)),
    ]
    pipeline, labels = [], []
    for label, on, make in steps:
        if on:
            pipeline += [make(), m.Count(label)]
            labels.append(label)
    return pipeline, labels


def _stage1(cfg: CleanConfig, docs, out_path: str):
    """In-process stage 1: documents -> filter steps -> exact dedup -> Collect; pipeline and labels."""
    from jaxllm.data import clean_steps as m
    steps, labels = filter_steps(cfg)
    pipeline = [docs, m.Count("input"), *steps]
    labels = ["input", *labels]
    if cfg.exact_dedup:
        pipeline += [m.ExactDedup(), m.Count("exact_dedup")]
        labels.append("exact_dedup")
    pipeline.append(m.Collect(out_path))
    return pipeline, labels


def _run(pipeline: list, tasks: int = 1) -> None:
    """One datatrove stage in this process: chain the steps as its executor does for each task.

    Not LocalPipelineExecutor: that starts a multiprocessing manager (a fork), unsafe inside a process
    where JAX already runs threads, and deep-copies the steps, hiding their statistics.
    """
    from collections import deque

    from loguru import logger
    logger.disable("datatrove")  # per-task INFO chatter; the report below says what matters
    for rank in range(tasks):
        data = None
        for step in pipeline:
            data = step(data, rank, tasks) if callable(step) else step
        if data is not None:
            deque(data, maxlen=0)


def _count(step) -> tuple[int, int]:
    return int(step.stats["documents"].total), int(step.stats["characters"].total)


def _minhash_config(cfg: CleanConfig):
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    return MinhashConfig(n_grams=cfg.minhash_ngrams, num_buckets=cfg.minhash_buckets, hashes_per_bucket=cfg.minhash_hashes_per_bucket)


def _minhash(cfg: CleanConfig, docs, work: Path, out_path: str):
    from datatrove.pipeline.dedup.minhash import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                                  MinhashDedupSignature)
    from jaxllm.data import clean_steps as m
    _datatrove()
    mc = _minhash_config(cfg)
    _run([docs, MinhashDedupSignature(output_folder=str(work / "sigs"), config=mc, language=m.RegexWords())])
    _run([MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=mc)],
         tasks=mc.num_buckets)
    _run([MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=mc)])
    count = m.Count("minhash")
    _run([docs, MinhashDedupFilter(input_folder=str(work / "remove")), count, m.Collect(out_path)])
    return count


def clean_documents(docs: list[str], cfg: CleanConfig) -> tuple[list[str], list[dict]]:
    """Run the configured steps; returns the kept documents (in order) and a per-step report."""
    _datatrove()
    from datatrove.data import Document
    with tempfile.TemporaryDirectory(prefix="jaxllm-clean-") as tmp:
        work = Path(tmp)
        items = [Document(text=t, id=str(i)) for i, t in enumerate(docs)]
        pipeline, labels = _stage1(cfg, items, str(work / "stage1.jsonl"))
        _run(pipeline)
        counts = [_count(step) for step in pipeline if getattr(step, "name", "").startswith("count:")]
        kept = [json.loads(line)["text"] for line in (work / "stage1.jsonl").read_text().splitlines()]
        if cfg.minhash and kept:
            items = [Document(text=t, id=str(i)) for i, t in enumerate(kept)]
            counts.append(_count(_minhash(cfg, items, work / "minhash", str(work / "final.jsonl"))))
            labels.append("minhash")
            kept = [json.loads(line)["text"] for line in (work / "final.jsonl").read_text().splitlines()]
    return kept, step_report([(label, *c) for label, c in zip(labels, counts)])


def step_report(counts: list[tuple[str, int, int]]) -> list[dict]:
    """``[(step, documents, characters) after each step]`` -> what each step removed from the one before."""
    report = []
    for i, (label, docs, chars) in enumerate(counts):
        prev_docs, prev_chars = counts[i - 1][1:] if i else (docs, chars)
        report.append({"step": label, "documents": docs, "documents_removed": prev_docs - docs,
                       "characters": chars, "characters_removed": prev_chars - chars})
    return report


def format_report(report: list[dict]) -> str:
    lines = [f"{'step':<15}{'documents':>11}{'removed':>9}{'characters':>13}{'removed':>11}"]
    for r in report:
        lines.append(f"{r['step']:<15}{r['documents']:>11,}{r['documents_removed']:>9,}{r['characters']:>13,}{r['characters_removed']:>11,}")
    return "\n".join(lines)


def clean_to_jsonl(data, out: str | None) -> list[str]:
    """`jaxllm data clean`: ``data`` (a `DataConfig`)'s documents cleaned in this process, what each step
    removed, and (with ``out``) the kept documents as JSONL; lines for the user."""
    from jaxllm.data.sources import load_documents

    docs, report = load_documents(data)
    kept, steps = clean_documents(docs, data.clean)
    lines = [format_report(steps)]
    if report["skipped_records"]:
        lines.append(f"skipped {report['skipped_records']} bad records, e.g. {report['skipped_examples'][0]}")
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            for d in kept:
                f.write(json.dumps({"text": d}) + "\n")
        lines.append(f"wrote {len(kept)} documents to {path}")
    return lines
