"""Cleaning corpora larger than one process: the same steps over JSONL file shards, run by
datatrove's executors (local worker processes, SLURM jobs, or Ray), stage after stage.

    input JSONL shards -> [1] filter steps -> [2-4] exact dedup (signatures, find, filter)
                       -> [5-8] MinHash (signatures, buckets, clusters, filter) -> output JSONL shards

Each stage is one executor with its own logging dir under ``work_dir`` (datatrove's per-task
completion markers make a re-run skip finished tasks, so an interrupted job resumes). The report
is read from the stages' merged ``stats.json``. Call it from a process without JAX running
(the CLI's `jaxllm data clean --executor ...`): local workers are forked processes.
"""

from __future__ import annotations

import json
from pathlib import Path

from jaxllm.config.schema import CleanConfig
from jaxllm.data.clean import _datatrove, _minhash_config, filter_steps, step_report
from jaxllm.errors import UserError


def _executor(kind: str, pipeline: list, name: str, work: Path, tasks: int, workers: int, depends, slurm: dict):
    logging_dir = str(work / "logs" / name)
    if kind == "local":
        from datatrove.executor import LocalPipelineExecutor
        return LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=min(workers, tasks), logging_dir=logging_dir,
                                     depends=depends)
    if kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor
        return SlurmPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir,
                                     job_name=f"jaxllm-clean-{name}", depends=depends, **slurm)
    if kind == "ray":
        import importlib.util
        if importlib.util.find_spec("ray") is None:
            raise UserError("executor 'ray' needs Ray: pip install 'datatrove[ray]'.")
        from datatrove.executor import RayPipelineExecutor
        return RayPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, depends=depends)
    raise UserError(f"cleaning executor {kind!r}: use local, slurm or ray.")


def build_stages(cfg: CleanConfig, input_dir: str, output_dir: str, work_dir: str, *, executor: str = "local",
                 tasks: int = 4, workers: int = 2, field: str = "text", glob: str = "*.jsonl*",
                 slurm: dict | None = None) -> list:
    """The chain of executors (each ``depends`` on the one before), ready to ``run()`` the last."""
    _datatrove()
    from datatrove.pipeline.dedup.exact_dedup import ExactDedupConfig, ExactDedupFilter, ExactDedupSignature, ExactFindDedups
    from datatrove.pipeline.dedup.minhash import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                                  MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from jaxllm.data import clean_steps as m
    work = Path(work_dir)
    slurm = slurm or {}
    steps, _ = filter_steps(cfg)

    def read(folder):
        return JsonlReader(str(folder), glob_pattern=glob, text_key=field if folder == input_dir else "text")

    def write(folder):
        return JsonlWriter(str(folder), output_filename="${rank}.jsonl.gz")

    stages: list[tuple[str, list, int]] = [("filter", [read(input_dir), m.Count("input"), *steps, write(work / "filtered")], tasks)]
    current = work / "filtered"
    if cfg.exact_dedup:
        ec = ExactDedupConfig(content_getter=m.normalized_text)
        stages += [
            ("exact_signatures", [read(current), ExactDedupSignature(str(work / "exact_sigs"), config=ec)], tasks),
            ("exact_find", [ExactFindDedups(str(work / "exact_sigs"), str(work / "exact_dups"), config=ec)], 1),
            ("exact_filter", [read(current), ExactDedupFilter(str(work / "exact_dups"), config=ec), m.Count("exact_dedup"),
                              write(work / "exact")], tasks),
        ]
        current = work / "exact"
    if cfg.minhash:
        mc = _minhash_config(cfg)
        stages += [
            ("minhash_signatures", [read(current), MinhashDedupSignature(str(work / "mh_sigs"), config=mc,
                                                                          language=m.RegexWords())], tasks),
            ("minhash_buckets", [MinhashDedupBuckets(str(work / "mh_sigs"), str(work / "mh_buckets"), config=mc)], mc.num_buckets),
            ("minhash_cluster", [MinhashDedupCluster(str(work / "mh_buckets"), str(work / "mh_remove"), config=mc)], 1),
            ("minhash_filter", [read(current), MinhashDedupFilter(str(work / "mh_remove")), m.Count("minhash"),
                                write(output_dir)], tasks),
        ]
    else:
        stages.append(("copy_out", [read(current), write(output_dir)], tasks))
    chain, previous = [], None
    for name, pipeline, n in stages:
        previous = _executor(executor, pipeline, name, work, n, workers, previous, slurm)
        chain.append(previous)
    return chain


def report_from_logs(work_dir: str) -> list[dict]:
    """Documents and characters after each counted step, from the stages' merged stats.json files."""
    counts = []
    for stats_file in sorted(Path(work_dir, "logs").glob("*/stats.json"), key=lambda p: p.stat().st_mtime):
        for s in json.loads(stats_file.read_text()):
            if "count:" in s["name"]:
                st = s["stats"]
                label = s["name"].split("count:")[-1]
                counts.append((label, int(st.get("documents", 0)), int(st.get("characters", {}).get("total", 0))))
    return step_report(counts)


def _write_shards(docs: list[str], folder: Path, n: int) -> None:
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        with gzip.open(folder / f"{k:05d}.jsonl.gz", "wt") as f:
            for i in range(k, len(docs), n):
                f.write(json.dumps({"text": docs[i], "id": str(i)}) + "\n")


def clean_sharded(data, out: str | None, work: str | None, input_dir: str | None, executor: str, tasks: int,
                  workers: int, slurm: dict | None) -> list[str]:
    """`jaxllm data clean --executor`: ``data`` (a `DataConfig`)'s source (or ``input_dir``'s JSONL shards)
    cleaned by datatrove's local or SLURM executor into ``out``; lines for the user."""
    import tempfile

    from jaxllm.data.clean import format_report
    from jaxllm.data.sources import load_documents

    if not out:
        raise UserError("--executor needs --out DIR for the cleaned JSONL shards.")
    work_dir = Path(work or tempfile.mkdtemp(prefix="jaxllm-clean-"))
    if not input_dir:  # the configured source, written as shards first
        input_dir = str(work_dir / "input")
        _write_shards(load_documents(data)[0], Path(input_dir), tasks)
        field = "text"
    else:
        field = data.field
    chain = build_stages(data.clean, input_dir, out, str(work_dir), executor=executor, tasks=tasks, workers=workers,
                         field=field, slurm=slurm)
    chain[-1].run()
    if executor == "slurm":
        return [f"submitted {len(chain)} dependent SLURM stages; logs and stats in {work_dir / 'logs'}; output in {out}"]
    return [format_report(report_from_logs(str(work_dir))), f"cleaned shards in {out}; stage logs in {work_dir / 'logs'}"]
