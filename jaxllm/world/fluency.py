"""Text quality for the world's judge: is an answer fluent, whatever it says?

Three rules, each a plain check on the words of the answer (``words``: lower-case runs of letters, digits
and apostrophes), so a test can state by hand what each one catches:

- **degenerate** (repetition): a run of 1 to 6 tokens (words and punctuation marks) repeated back to back
  ("I can I can I can't", "the the", "Yes. Yes."), or, in an answer of at least 8 words, fewer than half of
  its words distinct (a loop). Punctuation counts as a token so that a correction that names the fact twice
  across a clause boundary ("X is not the capital of N; the capital of N is Y.") is not a repeat.
- **broken**: empty; an answer that stopped without ending its last sentence (``.``, ``!`` or ``?``);
  doubled or stray punctuation (``..``, ``,.``, `` .``); or a lower-case first letter.
- **off topic**: shares no content word (3+ letters, not a function word) with the prompt, and is not one
  of the answers that need none: the right answer ("Paris."), a refusal, "cannot know", or a hedge.

``fluent`` is none of the three. Candidate answers of the built-in rankings are all fluent but a few bad
ones (which stay the worst), so the labeler's rankings do not change; policies that stutter or drift do.
"""

from __future__ import annotations

import re

FUNCTION_WORDS = frozenset(
    "a an the of in on at to for from by with and or but not no is are was were be been am do does did can "
    "could will would should shall may might must have has had i me my mine you your yours we our us it its "
    "this that these those there here what which who whom whose where when why how right now tell please "
    "name give some any all about into than then so if just really very".split())
MAX_RUN = 6


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+|[.,;:!?]", text.lower())


def repeated_run(ws: list[str]) -> tuple[int, int] | None:
    """``(start, n)`` of the first run of ``n`` tokens (1..6, at least one a word) that repeats at once, else None
    (doubled punctuation is `broken`'s business)."""
    for n in range(1, MAX_RUN + 1):
        for i in range(len(ws) - 2 * n + 1):
            if ws[i:i + n] == ws[i + n:i + 2 * n] and any(w[0].isalnum() for w in ws[i:i + n]):
                return i, n
    return None


def degenerate(text: str) -> bool:
    ws = words(text)
    return repeated_run(tokens(text)) is not None or (len(ws) >= 8 and len(set(ws)) < len(ws) / 2)


def broken(text: str, stopped: bool) -> bool:
    t = text.strip()
    if not t:
        return True
    if stopped and t[-1] not in ".!?":
        return True
    if re.search(r"[.,;:!?]\s*[.,;:]|\s[.,;:!?]", t):
        return True
    return t[0].isalpha() and t[0].islower()


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if len(w) >= 3 and w not in FUNCTION_WORDS}


def off_topic(prompt: str, text: str, exempt: bool) -> bool:
    """No content word of ``prompt`` in ``text``; ``exempt``: the answer is one that needs none."""
    topic = content_words(prompt)
    return bool(topic) and not exempt and not (topic & content_words(text))


def fluency(prompt: str, text: str, stopped: bool, exempt: bool) -> dict[str, float]:
    d, b, o = degenerate(text), broken(text, stopped), off_topic(prompt, text, exempt)
    return {"degenerate": float(d), "broken": float(b), "off_topic": float(o), "fluent": float(not (d or b or o))}
