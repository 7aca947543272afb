"""Verifiable rewards: checkable functions of a response, with named components summed with weights.

A reward function is ``fn(prompts, responses, records) -> [N] floats`` (prompt texts, reply texts,
and each prompt's task record: ``{"answer": ..., ...}``). Built in:

- ``answer``: 1 if the response's final number equals the record's answer (`extract_answer`), else 0;
- ``closeness``: partial credit, ``1 - |got - want| / max(|want|, 1)`` (at least 0), a dense signal where
  exact answers are rare;
- ``format``: 1 if the response ended its turn and states its answer in the strict form (`strict_answer`);
- ``length``: ``-(response tokens) / max_new_tokens`` (in [-1, 0]);
- ``overlong``: DAPO's soft overlong penalty: 0 up to ``max_new_tokens - buffer`` tokens, then falling
  linearly to -1 at ``max_new_tokens``;
- ``model``: the reward model's score (from the rollout engine's scoring pass);
- ``module:function`` components: the user's own.

`check_scores` turns a user function's bad output (an exception, NaN, the wrong length, non-numbers)
into one line that names the function.
"""

from __future__ import annotations

import importlib
import math
from fractions import Fraction

import numpy as np

from jaxllm.data.numbers import NUMBER as _NUMBER, STRICT as _STRICT, number as _number, parse_number  # noqa: F401
from jaxllm.errors import UserError

def extract_answer(text: str) -> Fraction | None:
    """A response's final answer: the first number after its last ``####`` when it has one (GSM8K's
    convention), else the last number in it; None when there is none.

    Numbers: ``$`` and thousands commas are dropped (``$1,000`` -> 1000), a trailing period is not a
    decimal point (``72.`` -> 72), a minus sign right before the digits makes it negative (``= -12``),
    one with a space after it is an operator (``12 - 5 = 7`` -> 7).
    """
    if "####" in text:
        return parse_number(text.rsplit("####", 1)[1])
    found = list(_NUMBER.finditer(text))
    return _number(found[-1]) if found else None


def strict_answer(text: str) -> bool:
    """The response ends by stating its answer: ``#### N``, ``= N`` or ``answer is N`` at its end."""
    return bool(_STRICT.search(text.strip()))


def reference_answer(answer: str) -> Fraction | None:
    """A task record's answer as a number (GSM8K's ``...#### 72``, or a bare ``72``)."""
    return parse_number(answer.rsplit("####", 1)[1]) if "####" in answer else parse_number(answer)


def answer_correct(response: str, answer: str) -> bool:
    want, got = reference_answer(answer), extract_answer(response)
    return want is not None and got is not None and got == want


def answer_reward(prompts, responses, records) -> list[float]:
    return [float(answer_correct(r, rec["answer"])) for r, rec in zip(responses, records)]


def closeness_reward(prompts, responses, records) -> list[float]:
    """Partial credit: ``max(0, 1 - |got - want| / max(|want|, 1))`` (1 when right, 0 without a number)."""
    out = []
    for r, rec in zip(responses, records):
        want, got = reference_answer(rec["answer"]), extract_answer(r)
        out.append(0.0 if want is None or got is None else max(0.0, 1.0 - float(abs(got - want)) / max(float(abs(want)), 1.0)))
    return out


def format_reward(prompts, responses, records) -> list[float]:
    return [float(bool(rec.get("_stopped", True)) and strict_answer(r)) for r, rec in zip(responses, records)]


def length_penalty(lengths: np.ndarray, max_new: int) -> np.ndarray:
    return -np.asarray(lengths, np.float64) / max_new


def overlong_penalty(lengths: np.ndarray, max_new: int, buffer: int) -> np.ndarray:
    """DAPO: ``0`` for ``len <= max_new - buffer``, ``(max_new - buffer - len) / buffer`` up to ``max_new``."""
    lengths = np.asarray(lengths, np.float64)
    if buffer <= 0:
        return np.zeros_like(lengths)
    return np.clip((max_new - buffer - lengths) / buffer, -1.0, 0.0)


def import_function(spec: str, key: str):
    mod, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise UserError(f"{key} = {spec!r}: cannot import it ({e}); give 'module:function' with the module on "
                        "PYTHONPATH.") from None
    if not callable(fn):
        raise UserError(f"{key} = {spec!r}: {name} is a {type(fn).__name__}, not a function.")
    return fn


def parse_weighted(entry: str) -> tuple[str, float]:
    """``"pkg.mod:fn"`` -> (spec, 1.0); ``"pkg.mod:fn * 0.5"`` -> (spec, 0.5)."""
    spec, star, weight = entry.partition("*")
    try:
        return spec.strip(), float(weight) if star else 1.0
    except ValueError:
        raise UserError(f"reward function {entry!r}: the weight after '*' is not a number.") from None


def check_scores(name: str, fn, prompts, responses, records) -> np.ndarray:
    """``fn``'s scores as ``[N]`` float64, or one line naming what was wrong with its output."""
    n = len(responses)
    try:
        out = fn(prompts, responses, records)
    except Exception as e:  # a user's function: report it in one line, whatever it raised
        raise UserError(f"reward {name}: raised {type(e).__name__}: {e} (on a batch of {n} responses; first "
                        f"response {responses[0][:60]!r})") from None
    try:
        arr = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        kinds = sorted({type(x).__name__ for x in (out if isinstance(out, (list, tuple)) else [out])})
        raise UserError(f"reward {name}: returned non-numbers ({', '.join(kinds)}); it must return one float "
                        "per response.") from None
    if arr.shape != (n,):
        raise UserError(f"reward {name}: returned shape {arr.shape} for {n} responses; it must return one float "
                        "per response.")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise UserError(f"reward {name}: returned {arr[i]} for response {i} ({responses[i][:60]!r}); "
                        f"{bad.size} of {n} scores are not finite.")
    return arr


def combine(components: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """The weighted sum of the named component scores ``[N]`` each."""
    total = None
    for name, w in weights.items():
        part = w * components[name]
        total = part if total is None else total + part
    return total


def pearson(x, y) -> float:
    """Correlation of two series (0 when either is constant)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 2 or np.std(x) == 0 or np.std(y) == 0:
        return 0.0
    c = float(np.corrcoef(x, y)[0, 1])
    return 0.0 if math.isnan(c) else c
