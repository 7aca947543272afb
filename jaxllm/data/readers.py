"""Readers of local files: paths and globs, plain text, JSONL (``.gz`` too), and bad records named by
file and line (raised, or counted with ``data.on_error=skip``)."""

from __future__ import annotations

import glob
import gzip
import json
import re
import zlib
from pathlib import Path

from jaxllm.errors import UserError


def expand_paths(paths: list[str]) -> list[Path]:
    files = []
    for p in paths:
        hits = sorted(glob.glob(p)) if any(ch in p for ch in "*?[") else [p]
        if not hits:
            raise UserError(f"data.paths: {p!r} matches no file; check the pattern or the working directory.")
        for h in hits:
            if not Path(h).is_file():
                raise UserError(f"data.paths: file not found: {h}.")
            files.append(Path(h))
    return files


class BadRecords:
    """``on_error=raise``: the first bad record stops with file:line; ``skip``: count them (first few kept)."""

    def __init__(self, mode: str, hint: str = " (set data.on_error=skip to skip such records and count them)"):
        self.mode, self.hint, self.count, self.examples = mode, hint, 0, []

    def __call__(self, message: str) -> None:
        if self.mode == "raise":
            raise UserError(message + self.hint)
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(message)

    def report(self) -> dict:
        return {"skipped_records": self.count, "skipped_examples": self.examples}


def read_records(paths: list[str], on_error: str, parse, what: str) -> tuple[list, dict]:
    """``parse(record) -> list`` over every JSONL(.gz) record of ``paths``, in file order. A record it rejects
    (``ValueError`` or ``KeyError``) stops with file:line and the reason, or is counted (``on_error=skip``)."""
    bad = BadRecords(on_error)
    out = []
    for path in expand_paths(paths):
        for line, rec in iter_jsonl(Path(path), bad):
            try:
                out += parse(rec)
            except (ValueError, KeyError) as e:
                bad(f"{path}:{line}: {e}")
    if not out:
        raise UserError(f"data.paths {paths} hold no {what}"
                        + (f" ({bad.count} bad records skipped, e.g. {bad.examples[0]})" if bad.count else "") + ".")
    return out, bad.report()


def read_text(path: Path, bad: BadRecords | None = None) -> list[str]:
    """Documents are blocks separated by blank (or whitespace-only) lines; none means one document.

    A block that is not valid UTF-8 is a bad record (named by file and line)."""
    bad = bad or BadRecords("raise")
    data = path.read_bytes()
    docs, line = [], 1
    for block in re.split(rb"(\n[ \t\r]*\n)", data):  # "blank" lines may hold spaces (WikiText); separators kept
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as e:
            at = line + block[: e.start].count(b"\n")
            bad(f"{path}:{at}: invalid UTF-8 at byte {e.start} of the document")
            text = ""
        if text.strip() and not re.fullmatch(r"\n[ \t\r]*\n", text):
            docs.append(text.strip())
        line += block.count(b"\n")
    return docs


def _lines(f, path: Path, bad: BadRecords):
    """``(line number, bytes)`` of an open file; a gzip stream that breaks off (truncated or corrupt) ends
    the file as one bad record that says how many lines came before the break."""
    i = 0
    while True:
        try:
            raw = f.readline()
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            bad(f"{path}:{i + 1}: the gzip stream breaks off here ({type(e).__name__}: {e}); the file is truncated or "
                f"corrupt, {i} lines were read before the break")
            return
        if not raw:
            return
        i += 1
        yield i, raw


def iter_jsonl(path: Path, bad: BadRecords | None = None):
    """``(line number, record dict)`` for each valid line of a JSONL file (``.gz`` read transparently)."""
    bad = bad or BadRecords("raise")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for i, raw in _lines(f, path, bad):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad(f"{path}:{i}: invalid UTF-8 at byte {e.start} of the line")
                continue
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                bad(f"{path}:{i}: not valid JSON ({e.msg})")
                continue
            if not isinstance(rec, dict):
                bad(f"{path}:{i}: a JSON {type(rec).__name__}, expected an object")
                continue
            yield i, rec


def read_jsonl(path: Path, field: str, bad: BadRecords | None = None) -> list[str]:
    bad = bad or BadRecords("raise")
    docs = []
    for i, rec in iter_jsonl(path, bad):
        if field not in rec:
            bad(f"{path}:{i}: no field {field!r} (found: {', '.join(rec)}); set data.field to the text field")
            continue
        if not isinstance(rec[field], str):
            bad(f"{path}:{i}: field {field!r} is {type(rec[field]).__name__}, expected a string")
            continue
        docs.append(rec[field])
    return docs
