"""The world's verifiable task: arithmetic questions with checkable answers, for RL with verifiable rewards.

Questions are the phrasings the SFT chats use ("What is 23 times 4?", "Compute 23 * 4.", "How much is
23 * 4?"), over operands 2..``max_operand`` and + - * (a - b with a >= b), so an SFT model has seen the
answer format ("23 * 4 = 92."). Which operand triples are held out does not depend on the seed: a
triple is held out when the CRC32 of ``"a op b"`` falls in the lowest ``heldout`` share, so no seed's
training questions ever ask a held-out one. The pre-training corpus and SFT chats draw their own
arithmetic at random from the same triples, so a held-out question may occur there (as it may for any
benchmark scraped from the web); GRPO never trains on it.
"""

from __future__ import annotations

import random
import zlib

OPS = (("+", "plus"), ("-", "minus"), ("*", "times"))
PHRASINGS = ("What is {a} {word} {b}?", "Compute {a} {op} {b}.", "How much is {a} {op} {b}?")


def is_heldout(a: int, op: str, b: int, heldout: float) -> bool:
    return zlib.crc32(f"{a} {op} {b}".encode()) % 10_000 < heldout * 10_000


def arithmetic_task(n_train: int, n_heldout: int, seed: int = 0, heldout: float = 0.2,
                    max_operand: int = 99) -> tuple[list[dict], list[dict]]:
    """``(train, held out)`` records ``{"question", "answer", "op", "expression"}``, each list without repeats
    (shorter than asked when the operand range has fewer triples)."""
    rng = random.Random(seed + 23)
    train, held, seen = [], [], set()
    k = max_operand - 1
    limit = 2 * k * k + k * (k + 1) // 2  # distinct triples: a + b, a * b, and a - b with a >= b
    while (len(train) < n_train or len(held) < n_heldout) and len(seen) < limit:
        a, b = rng.randint(2, max_operand), rng.randint(2, max_operand)
        op, word = rng.choice(OPS)
        if op == "-" and b > a:
            a, b = b, a
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        r = a + b if op == "+" else a - b if op == "-" else a * b
        rec = {"question": rng.choice(PHRASINGS).format(a=a, b=b, op=op, word=word), "answer": str(r), "op": op,
               "expression": f"{a} {op} {b}"}
        out = held if is_heldout(a, op, b, heldout) else train
        want = n_heldout if out is held else n_train
        if len(out) < want:
            out.append(rec)
    return train, held


def demonstration(rec: dict) -> str:
    """The answer an SFT chat gives to a task question: ``"23 * 4 = 92."``."""
    return f"{rec['expression']} = {rec['answer']}."
