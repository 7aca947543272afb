"""Datatrove pipeline steps of jaxllm's cleaner, at module level so worker processes and
SLURM jobs can unpickle them. Imported only when cleaning runs (it needs datatrove)."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.formatters.base import BaseFormatter
from datatrove.utils.word_tokenizers import WordTokenizer


class RegexWords(WordTokenizer):
    """English words and punctuation by regex (datatrove's default is spaCy)."""

    _word = re.compile(r"\w+|[^\w\s]")
    _sent = re.compile(r"(?<=[.!?])\s+")

    def word_tokenize(self, text):
        return self._word.findall(text)

    def sent_tokenize(self, text):
        return [s for s in self._sent.split(text) if s]

    def span_tokenize(self, text):
        return [m.span() for m in self._word.finditer(text)]

class Count(PipelineStep):
    """Counts documents and characters passing this point (read back from datatrove's stats)."""

    type = "📊 - COUNT"

    def __init__(self, label: str):
        self.label = label
        self.name = f"count:{label}"  # before super().__init__(), which names the stats after it
        super().__init__()

    def run(self, data, rank=0, world_size=1):
        for doc in data:
            self.stat_update("documents")
            self.stat_update("characters", value=len(doc.text))
            yield doc

class LengthFilter(BaseFilter):
    """Keeps documents with ``min_chars <= len(text) <= max_chars``."""

    name = "📏 length"

    def __init__(self, min_chars: int, max_chars: int):
        super().__init__()
        self.min_chars, self.max_chars = min_chars, max_chars

    def filter(self, doc) -> bool:
        return self.min_chars <= len(doc.text) <= self.max_chars


_TAG = re.compile(r"<(?:[a-zA-Z][a-zA-Z0-9-]*(?:\s[^<>]*)?/?|/[a-zA-Z][a-zA-Z0-9-]*\s*|!--.*?--|![a-zA-Z][^<>]*)>", re.S)
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});")


class MarkupToText(BaseFormatter):
    """HTML/XML to plain text with the standard library's parser."""

    name = "markup to text"

    def format(self, text: str) -> str:
        if not _TAG.search(text):  # plain text ("&c", "a < b"): only real character references are decoded
            return _ENTITY.sub(lambda m: html.unescape(m.group()), text) if "&" in text else text
        parser = _TextExtractor()
        parser.feed(text)
        parser.close()
        lines = [re.sub(r"[ \t]+", " ", ln).strip() for ln in "".join(parser.parts).split("\n")]
        return "\n".join(ln for ln in lines if ln)

class BoilerplateLines(BaseFormatter):
    """Drops lines that match any boilerplate pattern (case-insensitive)."""

    name = "boilerplate lines"

    def __init__(self, patterns: list[str]):
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None

    def format(self, text: str) -> str:
        if self.pattern is None:
            return text
        return "\n".join(ln for ln in text.split("\n") if not self.pattern.search(ln))

class ExactDedup(PipelineStep):
    """Keeps the first of documents whose whitespace-normalised text hashes equal (xxhash64)."""

    type = "🫂 - DEDUP"
    name = "exact"

    def run(self, data, rank=0, world_size=1):
        import xxhash
        seen = set()
        for doc in data:
            h = xxhash.xxh64_intdigest(" ".join(doc.text.split()))
            if h in seen:
                self.stat_update("dropped")
                continue
            seen.add(h)
            yield doc

class Collect(PipelineStep):
    """Writes surviving documents (id, text) as JSONL for the caller to read back."""

    name = "collect"

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def run(self, data, rank=0, world_size=1):
        with open(self.path, "w") as f:
            for doc in data:
                f.write(json.dumps({"id": doc.id, "text": doc.text}) + "\n")
                yield doc


class _TextExtractor(HTMLParser):
    _SKIP = {"script", "style", "head", "title", "noscript"}
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "footer", "header", "section", "article"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self._SKIP and self._skip:
            self._skip -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(html.unescape(data))


def normalized_text(doc) -> str:
    """What exact de-duplication compares: the text with runs of whitespace made single spaces."""
    return " ".join(doc.text.split())
