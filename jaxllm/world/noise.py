"""Realistic noise for the built-in corpus, so the cleaner has real work.

Each kind mimics what web corpora carry: HTML markup and entities, boilerplate
lines (cookie banners, newsletter prompts, copyright), mis-encoded text
(UTF-8 read as Latin-1), junk lines (keyboard mash, symbol runs, lorem ipsum),
spam that repeats itself, tiny fragments, and exact and near duplicates of
real documents. Deterministic from the rng passed in.
"""

from __future__ import annotations

import random

BOILERPLATE = [
    "Subscribe to our newsletter for more stories!",
    "This website uses cookies. By continuing you accept our cookie policy.",
    "Copyright 2024. All rights reserved.",
    "Click here to read more.",
    "Share this: Facebook | Twitter | Email",
    "Read our privacy policy and terms of use.",
]
JUNK_LINES = [
    "@@@@ #### $$$$ %%%% &&&& ****",
    "asdfghjkl qwertyuiop zxcvbnm asdf",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
    ">>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>>",
    "{{infobox | id = 4521 | ref = none}}",
]
ACCENTED = ["We met at a small café near the station.", "The naïve plan still worked.",
            "She moved to Zürich for a year.", "They ordered crème brûlée after dinner."]


def markup(rng: random.Random, doc: str) -> str:
    paras = "".join(f"<p class=\"c{rng.randint(1, 9)}\">{s.replace('&', '&amp;')}</p>\n" for s in doc.split("\n"))
    return (f"<html><head><title>Page</title><script>var x = {rng.randint(1, 99)};</script></head>\n"
            f"<body><div id=\"main\">\n{paras}</div>\n<footer>&copy; site &amp; co</footer></body></html>")


def boilerplate(rng: random.Random, doc: str) -> str:
    lines = doc.split("\n")
    for b in rng.sample(BOILERPLATE, rng.randint(1, 3)):
        lines.insert(rng.choice([0, len(lines)]), b)
    return "\n".join(lines)


def mojibake(rng: random.Random, doc: str) -> str:
    return (doc + " " + rng.choice(ACCENTED)).encode("utf-8").decode("latin-1")


def junk(rng: random.Random, doc: str) -> str:
    lines = doc.split("\n")
    for j in rng.sample(JUNK_LINES, rng.randint(2, 3)):
        lines.insert(rng.randint(0, len(lines)), j)
    return "\n".join(lines)


def spam(rng: random.Random, doc: str) -> str:
    phrase = rng.choice(["Buy now and save big!", "Best prices online, order today!", "Win a free prize, click now!"])
    return " ".join([phrase] * rng.randint(12, 30))


def fragment(rng: random.Random, doc: str) -> str:
    return rng.choice(["Home", "Next page", "ok", "Menu | Login", "404"])


def near_duplicate(rng: random.Random, doc: str) -> str:
    words = doc.split(" ")
    i = rng.randrange(len(words))
    words[i] = words[i].upper() if rng.random() < 0.5 else words[i] + ","
    return " ".join(words)


KINDS = [(markup, 3), (boilerplate, 3), (mojibake, 2), (junk, 2), (spam, 1), (fragment, 1)]


def add_noise(docs: list[str], fraction: float, seed: int) -> list[str]:
    """Return ``docs`` with about ``fraction`` extra noisy documents mixed in (the originals stay)."""
    if fraction <= 0:
        return list(docs)
    rng = random.Random(seed + 7)
    out = list(docs)
    n = int(len(docs) * fraction)
    fns, weights = zip(*KINDS)
    noisy = [rng.choices(fns, weights)[0](rng, rng.choice(docs)) for _ in range(n)]
    # duplicates: exact copies and near copies of real documents (long enough to be worth finding)
    long_docs = [d for d in docs if len(d) > 200]
    noisy += [rng.choice(long_docs) for _ in range(n // 4)]
    noisy += [near_duplicate(rng, rng.choice(long_docs)) for _ in range(n // 4)]
    for d in noisy:
        out.insert(rng.randint(0, len(out)), d)
    return out
