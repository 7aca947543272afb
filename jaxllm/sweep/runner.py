"""Run a sweep: every config is checked first, then the runs go one after another (each a fresh
`jaxllm train` process, so one run's memory never leaks into the next); finished runs are skipped and
unfinished ones resume from their checkpoints. ``<dir>/sweep.json`` records the runs and what varies,
for `jaxllm compare` and `jaxllm plot`.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from jaxllm.sweep.spec import Sweep

MANIFEST = "sweep.json"
LAUNCHERS = {
    "plain": "jaxllm train {base} {overrides}",
    "local": "launch/local.sh {processes} {base} {overrides}",
    "slurm": "sbatch --job-name={name} launch/slurm.sbatch {base} {overrides}",
}


def is_finished(run_dir: Path, steps: int) -> bool:
    from jaxllm.train.checkpoint import latest_step

    summary = run_dir / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        if s.get("finished") and s.get("step") == steps:
            return True
    return latest_step(run_dir / "checkpoints") == steps


def check_configs(sweep: Sweep) -> dict[str, object]:
    """Load every run's config (errors name the run) and return them by run name."""
    from jaxllm.config import load_config
    from jaxllm.errors import UserError

    out = {}
    for run in sweep.runs:
        try:
            out[run.name] = load_config(sweep.base, sweep.cli_overrides(run))
        except UserError as e:
            raise type(e)(f"{sweep.path}, run {run.name}: {e}") from None
    return out


def write_manifest(sweep: Sweep) -> None:
    sweep.dir.mkdir(parents=True, exist_ok=True)
    (sweep.dir / MANIFEST).write_text(json.dumps({
        "sweep": str(sweep.path), "base": sweep.base, "set": sweep.common, "varied": sweep.varied,
        "runs": [{"name": r.name, "dir": r.name, "overrides": r.overrides} for r in sweep.runs],
    }, indent=1) + "\n")


def commands(sweep: Sweep, launcher: str = "plain", processes: int = 1) -> list[str]:
    """One shell command per run, for a cluster or a script."""
    return [LAUNCHERS[launcher].format(base=shlex.quote(sweep.base), processes=processes, name=shlex.quote(r.name),
                                       overrides=" ".join(shlex.quote(o) for o in sweep.cli_overrides(r)))
            for r in sweep.runs]


def run_sweep(sweep: Sweep, say=print) -> dict[str, str]:
    """Run what is not finished; returns run name -> finished | skipped | failed (exit N)."""
    cfgs = check_configs(sweep)
    write_manifest(sweep)
    status = {}
    for i, run in enumerate(sweep.runs, 1):
        head = f"[sweep {i}/{len(sweep.runs)}] {run.name}"
        if is_finished(run.dir, cfgs[run.name].train.steps):
            say(f"{head}: finished earlier, skipped")
            status[run.name] = "skipped"
            continue
        resumed = (run.dir / "checkpoints").is_dir()
        say(f"{head}: {'resuming' if resumed else 'starting'} in {run.dir}")
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", "jaxllm.cli", "train", sweep.base, *sweep.cli_overrides(run)])
        took = time.perf_counter() - t0
        status[run.name] = "finished" if rc == 0 else f"failed (exit {rc})"
        say(f"{head}: {status[run.name]} in {took:.0f}s")
    return status
