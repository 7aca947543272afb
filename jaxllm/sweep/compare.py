"""Read finished (or running) run dirs and compare them: one row per setting, mean ± std over seeds.

A run dir holds ``config.yaml``, ``metrics.jsonl`` (one JSON object per logged step; eval rows carry
``eval_*`` keys) and, once training returned, ``summary.json`` (wall time). Which keys vary comes
from a sweep's ``sweep.json`` when the runs are one sweep's, else from comparing the configs.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
from pathlib import Path

import yaml

from jaxllm.errors import UserError

_IGNORED = {"run.dir", "init_from"}
_LOWER_IS_BETTER = ("loss", "ppl", "kl", "error")


@dataclasses.dataclass
class RunRecord:
    dir: Path
    config: dict            # flattened: "optimizer.lr" -> value
    rows: list[dict]        # metrics.jsonl
    summary: dict

    def series(self, metric: str) -> tuple[list[int], list[float]]:
        pts = [(r["step"], r[metric]) for r in self.rows if r.get(metric) is not None]
        return [p[0] for p in pts], [float(p[1]) for p in pts]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def read_run(run_dir: Path) -> RunRecord:
    cfg_path, metrics = run_dir / "config.yaml", run_dir / "metrics.jsonl"
    if not cfg_path.is_file():
        raise UserError(f"{run_dir}: no config.yaml; not a jaxllm run dir (or it never started).")
    rows = []
    if metrics.is_file():
        for n, line in enumerate(metrics.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    raise UserError(f"{metrics}:{n}: not a JSON object; the file is damaged.") from None
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return RunRecord(run_dir, _flatten(yaml.safe_load(cfg_path.read_text()) or {}), rows, summary)


def collect(paths: list[str]) -> tuple[list[RunRecord], list[str]]:
    """Run records from run dirs and/or sweep dirs, and the keys that vary between them (seed last)."""
    from jaxllm.sweep.runner import MANIFEST

    runs, varied = [], None
    for p in map(Path, paths):
        if (p / MANIFEST).is_file():
            man = json.loads((p / MANIFEST).read_text())
            found = [p / r["dir"] for r in man["runs"] if (p / r["dir"] / "config.yaml").is_file()]
            if not found:
                raise UserError(f"{p}: no run of this sweep has started yet.")
            runs += [read_run(d) for d in found]
            varied = man["varied"] if varied is None else varied + [k for k in man["varied"] if k not in varied]
        elif p.is_dir():
            runs.append(read_run(p))
        else:
            raise UserError(f"{p}: no such run or sweep dir.")
    if len(paths) > 1 or varied is None:
        keys = sorted({k for r in runs for k in r.config} - _IGNORED)
        varied = [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1]
        varied = [k for k in varied if k != "seed"] + (["seed"] if "seed" in varied else [])
    return runs, varied


def _best(values: list[float], metric: str) -> float:
    return min(values) if any(s in metric for s in _LOWER_IS_BETTER) else max(values)


def run_metrics(r: RunRecord, metrics: list[str]) -> dict[str, float]:
    out = {}
    for m in metrics:
        _, vals = r.series(m)
        if vals:
            out[m] = vals[-1]
            if m.startswith("eval_"):
                out[f"best_{m}"] = _best(vals, m)
    for m in ("tokens_per_s", "mfu"):
        _, vals = r.series(m)
        if vals:
            out[m] = statistics.median(vals)
    if "wall_s" in r.summary:
        out["wall_s"] = float(r.summary["wall_s"])
    return out


def default_metrics(runs: list[RunRecord]) -> list[str]:
    keys = list(dict.fromkeys(k for r in runs for row in r.rows for k in row if k.startswith("eval_")))
    return keys or ["loss"]


def table(runs: list[RunRecord], varied: list[str], metrics: list[str] | None = None, sort: str | None = None,
          descending: bool = False) -> tuple[list[str], list[dict]]:
    """Rows grouped by the varied keys other than seed: ``{key: value, "seeds": n, metric: (mean, std)}``."""
    metrics = metrics or default_metrics(runs)
    group_keys = [k for k in varied if k != "seed"]
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        key = tuple(repr(r.config.get(k)) for k in group_keys)
        groups.setdefault(key, []).append({"run": r, "values": run_metrics(r, metrics)})
    cols = [c for m in metrics for c in (m, f"best_{m}") if any(c in g["values"] for gs in groups.values() for g in gs)]
    cols += [c for c in ("tokens_per_s", "mfu", "wall_s") if any(c in g["values"] for gs in groups.values() for g in gs)]
    rows = []
    for members in groups.values():
        row = {k: members[0]["run"].config.get(k) for k in group_keys}
        row["seeds"] = len(members)
        for c in cols:
            vals = [m["values"][c] for m in members if c in m["values"]]
            row[c] = (statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0) if vals else None
        rows.append(row)
    if sort:
        if sort not in cols and sort not in group_keys:
            raise UserError(f"--sort {sort}: not a column; choose one of {', '.join(group_keys + cols)}.")
        def key(row):
            v = row[sort]
            v = v[0] if isinstance(v, tuple) else v
            return (v is None, -v if descending and isinstance(v, (int, float)) else v)
        rows.sort(key=key)
    return group_keys + ["seeds"] + cols, rows


def _cell(v, n_seeds: int) -> str:
    if isinstance(v, tuple):
        mean, std = v
        digits = 4 if abs(mean) < 100 else 0
        return f"{mean:,.{digits}f}" + (f" ± {std:,.{digits}f}" if n_seeds > 1 else "")
    if isinstance(v, float):
        return f"{v:g}"
    return "-" if v is None else str(v)


def render(columns: list[str], rows: list[dict]) -> tuple[str, str]:
    """(aligned text, Markdown)."""
    cells = [[_cell(r[c], r["seeds"]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    text = "\n".join(["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
                     + ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells])
    md = "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
                   + ["| " + " | ".join(row) + " |" for row in cells])
    return text, md + "\n"


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        head = []
        for c in columns:
            head += [c, f"{c}_std"] if any(isinstance(r[c], tuple) for r in rows) else [c]
        w.writerow(head)
        for r in rows:
            line = []
            for c in columns:
                v = r[c]
                if any(isinstance(x[c], tuple) for x in rows):
                    line += ["", ""] if v is None else [repr(v[0]), repr(v[1])]
                else:
                    line.append("" if v is None else v)
            w.writerow(line)
