"""End-of-run verdicts for RL runs (GRPO, PPO): the failures users most often miss, with the numbers behind them.

Read from a run's logged rows (``metrics.jsonl``): rollout rows carry the training reward, the
response length and (GRPO) the share of groups whose rewards were all equal; evaluation rows carry a
held-out checker (the verifier's accuracy, the world's judge) that the policy never trains on.

- **no learning signal**: in a group where every response got the same reward every advantage is 0;
  flagged when more than ``flat_limit`` of the groups were flat over the run;
- **possible reward hacking**: the training reward rose while the held-out checker fell, between two
  evaluations, and the checker never came back (the pair with the largest fall; both changes beyond
  ``min_change``; a dip that later evaluations recover from is noise, not a trend);
- **length grew with reward**: mean response length from the first to the last quarter of the rollouts,
  and its correlation with the reward over the rollouts.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxllm.rl.rewards import pearson


@dataclasses.dataclass(frozen=True)
class Verdict:
    name: str       # no_signal, reward_hacking, length
    flagged: bool   # True: look at this
    text: str       # one line, with the numbers


def _series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], float(r[key])) for r in rows if r.get(key) is not None and np.isfinite(r[key])]


def _quarter_means(values: list[float]) -> tuple[float, float]:
    q = max(1, len(values) // 4)
    return float(np.mean(values[:q])), float(np.mean(values[-q:]))


def rl_verdicts(rows: list[dict], reward: str, checker: str | None, checker_name: str = "held-out checker",
                flat: str | None = None, length: str = "response_len", flat_limit: float = 0.2,
                min_change: float = 0.02, length_limit: float = 0.2) -> list[Verdict]:
    """The verdicts of one run from its logged ``rows``; checks whose metrics are missing are left out."""
    out = []
    if flat:
        shares = _series(rows, flat)
        if shares:
            mean = float(np.mean([v for _, v in shares]))
            worst_step, worst = max(shares, key=lambda sv: sv[1])
            if mean > flat_limit:
                out.append(Verdict("no_signal", True, f"no learning signal in {mean:.0%} of groups (mean over "
                                   f"{len(shares)} rollout batches; worst {worst:.0%} at step {worst_step}): all their "
                                   "responses got the same reward, so their advantages are 0. Raise group_size or the "
                                   "temperature, make the reward finer, or use dynamic sampling (loss_type dapo)."))
            else:
                out.append(Verdict("no_signal", False, f"learning signal in {1 - mean:.0%} of groups (flat groups: "
                                   f"mean {mean:.0%}, worst {worst:.0%} at step {worst_step})."))
    train = _series(rows, reward)
    if checker:
        evals = _series(rows, checker)
        if len(evals) >= 2 and train:
            # the training reward at an evaluation: the mean of the rollout batches logged since the one before
            at, prev = [], -1
            for step, _ in evals:
                window = [v for s, v in train if prev < s <= step] or [v for s, v in train if s <= step][-1:]
                at.append(float(np.mean(window)) if window else None)
                prev = step
            # the first evaluation (step 0) precedes every rollout: it pairs with the first reward logged
            at = [a if a is not None else train[0][1] for a in at]
            worst = None
            for i in range(len(evals)):
                for j in range(i + 1, len(evals)):
                    if at[i] is None or at[j] is None:
                        continue
                    rise, fall = at[j] - at[i], evals[i][1] - evals[j][1]
                    recovered = max(v for _, v in evals[j:]) > evals[i][1] - min_change  # a dip, not a trend
                    if rise > min_change and fall > min_change and not recovered and (worst is None or fall > worst[3]):
                        worst = (i, j, rise, fall)
            if worst:
                i, j, rise, fall = worst
                out.append(Verdict("reward_hacking", True, f"reward rose while the {checker_name} fell (possible "
                                   f"reward hacking) between steps {evals[i][0]} and {evals[j][0]}: {reward} "
                                   f"{at[i]:.3f} -> {at[j]:.3f}, {checker} {evals[i][1]:.3f} -> {evals[j][1]:.3f}."))
            else:
                out.append(Verdict("reward_hacking", False, f"the {checker_name} did not fall while the reward rose "
                                   f"({checker} {evals[0][1]:.3f} -> {evals[-1][1]:.3f} over {len(evals)} evaluations; "
                                   f"{reward} {at[0]:.3f} -> {at[-1]:.3f})."))
    lengths = _series(rows, length)
    if len(lengths) >= 2 and len(train) >= 2:
        first, last = _quarter_means([v for _, v in lengths])
        r_first, r_last = _quarter_means([v for _, v in train])
        by_step = dict(train)
        pairs = [(v, by_step[s]) for s, v in lengths if s in by_step]
        corr = pearson([a for a, _ in pairs], [b for _, b in pairs]) if len(pairs) >= 3 else 0.0
        growth = (last - first) / max(first, 1e-9)
        detail = (f"response length {first:.1f} -> {last:.1f} tokens ({growth:+.0%}) from the first to the last "
                  f"quarter of the rollouts, {reward} {r_first:.3f} -> {r_last:.3f}, correlation over the rollouts "
                  f"{corr:+.2f}")
        if growth > length_limit and r_last > r_first and corr > 0.5:
            out.append(Verdict("length", True, f"length grew {growth:.0%} with reward: {detail}; check that the "
                               "reward does not pay for length."))
        else:
            out.append(Verdict("length", False, detail + "."))
    return out


def write_verdicts(run_dir: Path, verdicts: list[Verdict]) -> str:
    """``verdicts.json`` and ``verdicts.md`` in the run dir; returns the lines to print."""
    lines = [("WARNING " if v.flagged else "ok      ") + v.text for v in verdicts]
    (Path(run_dir) / "verdicts.json").write_text(json.dumps([dataclasses.asdict(v) for v in verdicts], indent=1) + "\n")
    (Path(run_dir) / "verdicts.md").write_text("# Verdicts\n\n" + "\n".join(
        f"- **{'warning' if v.flagged else 'ok'}** ({v.name}): {v.text}" for v in verdicts) + "\n")
    return "\n".join(["verdicts:", *("  " + line for line in lines)])


def read_rows(run_dir: Path) -> list[dict]:
    f = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.is_file() else []
