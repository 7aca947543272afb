"""The non-finite guard's host side: read each step's ``nonfinite`` flag, then stop or count.

The step itself never applies a non-finite update (train/step.py), so the state stays
good; this decides what the run does about it. Flags stay on device until the loop reads
metrics anyway (log steps) or is about to checkpoint, so it adds no host sync per step.
"""

from __future__ import annotations

from typing import Callable

from jaxllm.errors import UserError


class NonFiniteStop(UserError):
    """The run stopped on a non-finite loss or gradient norm (exit 2, one line)."""


class FiniteGuard:
    def __init__(self, mode: str, max_skipped: int, last_good: Callable[[], str], to_host, say: Callable[[str], None]):
        self.mode, self.max_skipped, self.last_good, self.to_host, self.say = mode, max_skipped, last_good, to_host, say
        self.pending: list[tuple[int, dict]] = []
        self.streak = 0
        self.skipped = 0

    def add(self, step: int, metrics: dict) -> None:
        self.pending.append((step, {k: metrics[k] for k in ("nonfinite", "loss", "grad_norm")}))

    def check(self) -> None:
        """Read the flags of the steps since the last check; raise `NonFiniteStop` when the run must end."""
        if not self.pending:
            return
        steps, flags = [s for s, _ in self.pending], self.to_host([m for _, m in self.pending])
        self.pending = []
        for step, m in zip(steps, flags):
            if not float(m["nonfinite"]):
                self.streak = 0
                continue
            self.streak += 1
            self.skipped += 1
            what = f"step {step} gave a non-finite loss ({float(m['loss'])}) or gradient norm ({float(m['grad_norm'])})"
            if self.mode == "stop":
                raise NonFiniteStop(f"{what}; the parameters were not updated from it. Last good checkpoint: "
                                    f"{self.last_good()}. Lower optimizer.lr (or raise optimizer.warmup_steps, set "
                                    "optimizer.grad_clip), or set train.nonfinite=skip to skip such steps.")
            if self.streak >= self.max_skipped:
                raise NonFiniteStop(f"{what}: {self.streak} non-finite steps in a row (train.max_skipped = "
                                    f"{self.max_skipped}). Last good checkpoint: {self.last_good()}. Lower optimizer.lr.")
            self.say(f"step {step:>6}  skipped: non-finite loss or gradient norm ({self.skipped} skipped so far)")

    def metrics(self) -> dict:
        return {"skipped_steps": float(self.skipped)} if self.skipped else {}

