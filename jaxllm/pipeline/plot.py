"""A dependency-free SVG of metric curves, one panel per metric, panels side by side."""

from __future__ import annotations

from html import escape

W, H, PAD = 360, 240, 40
COLOURS = ("#1f77b4", "#d62728")


def _panel(x0: int, title: str, series: list[tuple[str, list[tuple[float, float]]]]) -> str:
    pts = [p for _, s in series for p in s]
    if not pts:
        return f'<text x="{x0 + PAD}" y="{H / 2}">{escape(title)}: no data</text>'
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xmin, xmax = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    ymin, ymax = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    fx = lambda x: x0 + PAD + (x - xmin) / (xmax - xmin) * (W - 2 * PAD)  # noqa: E731
    fy = lambda y: H - PAD - (y - ymin) / (ymax - ymin) * (H - 2 * PAD)  # noqa: E731
    out = [f'<text x="{x0 + W / 2}" y="20" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{x0 + PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" fill="none" stroke="#999"/>',
           f'<text x="{x0 + PAD - 4}" y="{PAD + 4}" text-anchor="end">{ymax:.2f}</text>',
           f'<text x="{x0 + PAD - 4}" y="{H - PAD}" text-anchor="end">{ymin:.2f}</text>',
           f'<text x="{x0 + PAD}" y="{H - PAD + 14}">{xmin:g}</text>',
           f'<text x="{x0 + W - PAD}" y="{H - PAD + 14}" text-anchor="end">step {xmax:g}</text>']
    for i, (label, s) in enumerate(series):
        if not s:
            continue
        c = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in s)
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="1.5"/>')
        out += [f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="2" fill="{c}"/>' for x, y in s]
        out.append(f'<text x="{x0 + PAD + 4}" y="{PAD + 14 + 14 * i}" fill="{c}">{escape(label)}</text>')
    return "\n".join(out)


def svg_curves(rows: list[dict], panels: list[tuple[str, str, str]]) -> str:
    """``rows``: metrics.jsonl records; ``panels``: (rollout key, held-out eval key, title) per panel."""
    parts = []
    for i, (train_key, eval_key, title) in enumerate(panels):
        series = [(f"rollouts ({train_key})", [(r["step"], r[train_key]) for r in rows if r.get(train_key) is not None]),
                  (f"held-out ({eval_key})", [(r["step"], r[eval_key]) for r in rows if r.get(eval_key) is not None])]
        parts.append(_panel(i * W, title, series))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(panels)}" height="{H}" font-family="sans-serif" '
            f'font-size="11">\n' + "\n".join(parts) + "\n</svg>\n")
