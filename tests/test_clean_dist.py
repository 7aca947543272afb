"""Cleaning over JSONL shards with datatrove's executors: the same result as in-process, resumable,
and SLURM submission (through a stand-in `sbatch` that records what it is given)."""

import gzip
import json
import os
import stat
import subprocess
import sys

import pytest

pytest.importorskip("datatrove")

from conftest import ROOT  # noqa: E402
from jaxllm.config import load_config  # noqa: E402
from jaxllm.data.clean import clean_documents  # noqa: E402
from jaxllm.data.sources import load_documents  # noqa: E402

ARGS = ["data", "clean", "pretrain/demo", "data.builtin.chars=200000"]


def _cli(args, env=None):
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-m", "jaxllm.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=600)


def _table(stdout):
    lines = stdout[stdout.index("step "):].splitlines()[1:]
    rows = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 5 and parts[1].replace(",", "").isdigit():
            rows[parts[0]] = int(parts[1].replace(",", ""))
    return rows


@pytest.mark.slow
def test_local_workers_match_in_process_and_resume(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    proc = _cli([*ARGS, "--executor", "local", "--tasks", "3", "--workers", "2", "--out", str(out), "--work", str(work)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    sharded = _table(proc.stdout)

    cfg = load_config(ROOT / "configs/pretrain/demo.yaml", ARGS[3:])
    docs, _ = load_documents(cfg.data)
    kept, report = clean_documents(docs, cfg.data.clean)
    assert sharded == {r["step"]: r["documents"] for r in report}  # every step removes the same documents
    written = [json.loads(line)["text"] for f in sorted(out.glob("*.jsonl.gz")) for line in gzip.open(f, "rt")]
    assert len(written) == len(kept) == sharded["minhash"]
    assert len(set(written)) == len(written)  # exact duplicates across shards are gone too

    # a re-run with the same work dir skips the finished tasks and reports the same
    again = _cli([*ARGS, "--executor", "local", "--tasks", "3", "--workers", "2", "--out", str(out), "--work", str(work)])
    assert again.returncode == 0 and _table(again.stdout) == sharded
    assert "already been completed" in again.stderr


def test_slurm_submits_dependent_stages(tmp_path):
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    calls.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f"""#!/usr/bin/env bash
n=$(ls {calls} | grep -c args)
echo "$@" > {calls}/$n.args
cp "${{@: -1}}" {calls}/$n.script
echo "Submitted batch job $((1000 + n))"
""")
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    proc = _cli([*ARGS, "--executor", "slurm", "--tasks", "4", "--slurm-partition", "cpu-long", "--slurm-time", "01:00:00",
                 "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")],
                env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitted 8 dependent SLURM stages" in proc.stdout
    scripts = [(calls / f"{i}.script").read_text() for i in range(len(list(calls.glob("*.script"))))]
    args = [(calls / f"{i}.args").read_text() for i in range(len(scripts))]
    stage_jobs = [s for s in scripts if "--array" in s or "#SBATCH --array" in s or "executor.pik" in s]
    assert len(stage_jobs) >= 8
    assert all("--partition=cpu-long" in s and "--time=01:00:00" in s for s in stage_jobs)
    assert sum("afterok:" in a or "afterok:" in s for a, s in zip(args, scripts)) >= 7  # each stage waits for the one before
    for name in ("filter", "exact_signatures", "exact_find", "exact_filter", "minhash_signatures", "minhash_buckets",
                 "minhash_cluster", "minhash_filter"):
        assert (tmp_path / "work" / "logs" / name / "executor.pik").is_file(), name


def test_ray_without_ray_installed_says_what_to_install(tmp_path):
    from jaxllm.config.schema import CleanConfig
    from jaxllm.data.clean_dist import build_stages
    from jaxllm.errors import UserError
    import importlib.util
    if importlib.util.find_spec("ray") is not None:
        pytest.skip("ray is installed here")  # the error path only exists without it
    with pytest.raises(UserError, match=r"pip install 'datatrove\[ray\]'"):
        build_stages(CleanConfig(enabled=True), str(tmp_path), str(tmp_path / "o"), str(tmp_path / "w"), executor="ray")
