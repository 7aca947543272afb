"""Throughput, MFU, and where metrics go: metrics.jsonl, TensorBoard and a progress bar.

Only process 0 writes; other processes get a logger that does nothing, so the
loop has no rank branches.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

# Dense bf16 peak FLOP/s per device, from vendor spec sheets (no sparsity).
PEAK_FLOPS = [
    ("h200", 989e12), ("h100", 989e12), ("a100", 312e12), ("l40s", 362e12), ("l4", 121e12),
    ("tpu v6", 918e12), ("tpu v5p", 459e12), ("tpu v5 lite", 197e12), ("tpu v5e", 197e12), ("tpu v5", 459e12),
    ("tpu v4", 275e12),
]


def measure_cpu_peak(n: int = 1024, trials: int = 7) -> float:
    """Best FLOP/s of a float32 ``n x n`` matmul on this host over ``trials`` (a peak, so the best,
    not the mean, which other processes on the machine would drag down): the CPU stand-in for MFU."""
    x = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(x).block_until_ready()
    best = float("inf")
    for _ in range(trials):
        t = time.perf_counter()
        f(x).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def peak_flops_per_device(override: float | None = None) -> tuple[float, str]:
    """Peak FLOP/s of one device and where the figure came from."""
    if override:
        return override, "config train.peak_flops_per_device"
    dev = jax.devices()[0]
    kind = dev.device_kind.lower()
    for key, flops in PEAK_FLOPS:
        if key in kind:
            return flops, f"spec sheet for {dev.device_kind}"
    if dev.platform == "cpu":
        host = measure_cpu_peak()
        return host / jax.local_device_count(), f"measured f32 matmul on this CPU ({host / 1e9:.1f} GFLOP/s per host)"
    return float("nan"), f"unknown device kind {dev.device_kind!r}; set train.peak_flops_per_device"


def _summary_writer(path: Path, purge_step: int | None = None):
    """tensorboardX (a dependency), else PyTorch's writer (GPU images without tensorboardX), else none.

    ``purge_step``: events at or after it, written before this restart, are dropped by TensorBoard's reader.
    """
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("warning: no TensorBoard writer (pip install tensorboardX); metrics go to metrics.jsonl only",
                  file=sys.stderr)
            return None
    return SummaryWriter(str(path), purge_step=purge_step)


def truncate_jsonl(path: Path, last_step: int) -> int:
    """Drop the rows after ``last_step`` from a metrics file (rewritten whole, then renamed); rows dropped."""
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    for line in path.read_text().splitlines(keepends=True):
        try:
            late = json.loads(line).get("step", 0) > last_step
        except (ValueError, AttributeError):
            late = True  # a row torn by a kill mid-write
        if late:
            dropped += 1
        else:
            keep.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(keep))
        tmp.replace(path)
    return dropped


class MetricsLogger:
    """Writes one JSON object per logged step to metrics.jsonl and scalars to TensorBoard.

    ``resumed_at``: the step a resumed run restarts from; rows logged after it by the interrupted
    run are removed (JSONL) or purged (TensorBoard), so each step appears once.
    """

    def __init__(self, run_dir: Path, tensorboard: bool, enabled: bool = True, resumed_at: int | None = None):
        self.enabled = enabled
        self._file = None
        self._tb = None
        if not enabled:
            return
        if resumed_at is not None:
            truncate_jsonl(run_dir / "metrics.jsonl", resumed_at)
        self._file = (run_dir / "metrics.jsonl").open("a")
        if tensorboard:
            self._tb = _summary_writer(run_dir / "tb", None if resumed_at is None else resumed_at + 1)

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if not isinstance(v, str) else v) for k, v in metrics.items()}
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in clean.items()}
        self._file.write(json.dumps({"step": step, **clean}) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in clean.items():
                if isinstance(v, float):
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()
        if self._tb:
            self._tb.close()


class Progress:
    """A tqdm bar with ETA on a terminal; plain lines otherwise (CI, log files)."""

    def __init__(self, total: int, initial: int, mode: str, enabled: bool):
        use_bar = enabled and (mode == "on" or (mode == "auto" and sys.stderr.isatty()))
        self.enabled = enabled
        self.bar = None
        if use_bar:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def update(self, n: int, postfix: str | None = None) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=False)

    def write(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
