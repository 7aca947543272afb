"""What the data pipeline did, as lines for the run log: cleaning counts and skipped records."""

from __future__ import annotations


def data_lines(stats: dict) -> list[str]:
    """Lines about the steps every source shares (objectives add their own: packing, rankings...)."""
    out = []
    if stats.get("cleaning"):
        from jaxllm.data.clean import format_report
        out.append("data cleaning (datatrove):\n" + format_report(stats["cleaning"]))
    if stats.get("skipped_records"):
        out.append(f"skipped {stats['skipped_records']} bad records (data.on_error=skip), "
                   f"e.g. {stats['skipped_examples'][0]}")
    return out
