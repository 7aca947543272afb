"""Metric curves over steps as PNG figures (matplotlib, headless): one line per setting, coloured by
the varied key, the mean over seeds with a band from the lowest to the highest seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxllm.errors import UserError
from jaxllm.sweep.compare import RunRecord


def _label(r: RunRecord, keys: list[str]) -> str:
    from jaxllm.sweep.spec import _fmt, _short_names

    short = _short_names(keys)
    return ", ".join(f"{short[k]}={_fmt(r.config.get(k))}" for k in keys) or r.dir.name


def plot_metric(runs: list[RunRecord], varied: list[str], metric: str, out: Path) -> int:
    """Write ``out`` (PNG); returns the number of lines drawn (one per setting)."""
    import matplotlib.pyplot as plt

    fig = figure(runs, varied, metric)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    n = len(fig.axes[0].lines)
    plt.close(fig)
    return n


def figure(runs: list[RunRecord], varied: list[str], metric: str):
    """The matplotlib figure of ``metric``: a line per setting (mean over seeds), a band per multi-seed setting."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in varied if k != "seed"]
    groups: dict[str, list[RunRecord]] = {}
    for r in runs:
        if r.series(metric)[1]:
            groups.setdefault(_label(r, keys), []).append(r)
    if not groups:
        known = sorted({k for r in runs for row in r.rows for k in row if k != "step"})
        raise UserError(f"no run logged {metric!r}; logged metrics: {', '.join(known)}.")
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, members) in enumerate(sorted(groups.items())):
        steps = sorted(set.intersection(*(set(m.series(metric)[0]) for m in members)))
        if not steps:  # seeds logged at different steps: plot the first
            members = members[:1]
            steps = members[0].series(metric)[0]
        vals = np.array([[dict(zip(*m.series(metric)))[s] for s in steps] for m in members])
        c = colors[i % len(colors)]
        seeds = f" ({len(members)} seeds)" if len(members) > 1 else ""
        ax.plot(steps, vals.mean(0), color=c, label=label + seeds, marker="o" if len(steps) < 3 else None)
        if len(members) > 1:
            ax.fill_between(steps, vals.min(0), vals.max(0), color=c, alpha=0.2, linewidth=0)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
