"""What the data pipeline did, as lines for the run log: cleaning counts and skipped records."""

from __future__ import annotations


def data_lines(stats: dict) -> list[str]:
    """Lines about the steps every source shares (objectives add their own: packing, rankings...)."""
    out = []
    cut = stats.get("cut_documents")
    if cut:
        out.append(f"cut {cut['documents']:,} documents longer than {cut['limit']:,} characters into {cut['pieces']:,} "
                   "pieces (data.max_document_chars) before cleaning and the train/eval split")
    if stats.get("cleaning"):
        from jaxllm.data.clean import format_report
        out.append("data cleaning (datatrove):\n" + format_report(stats["cleaning"]))
    t = stats.get("tokenizer_training")
    if t:
        left = (f"; {t['characters_left_out']:,} characters in {t['documents_left_out']:,} documents left out "
                f"(data.tokenizer.train_chars = {t['max_chars']:,})" if t["documents_left_out"] else "")
        out.append(f"tokenizer trained on {t['characters']:,} characters of {t['documents']:,} documents{left}")
    if stats.get("skipped_records"):
        out.append(f"skipped {stats['skipped_records']} bad records (data.on_error=skip), "
                   f"e.g. {stats['skipped_examples'][0]}")
    return out
