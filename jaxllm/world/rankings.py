"""The built-in rankings: K = 4 candidate answers per prompt, ranked by the labeler (the judge's rules),
standing in for human raters."""

from __future__ import annotations

import random

from jaxllm.data.chat import Message
from jaxllm.data.pref_data import Candidate, Ranking
from jaxllm.world.judge import judge
from jaxllm.world.options import WorldOptions
from jaxllm.world.prompts import EVASIVE, RAMBLE, Prompt, balanced, builtin_prompts


def candidates(p: Prompt, rng: random.Random, others: list[Prompt] | None = None) -> list[Candidate]:
    """K = 4 answers of different quality: ideal, rambling (stops or not), evasive (a refusal, "cannot know" or a
    hedge, whichever is not this kind's right behaviour nor its bad answer; with ``others``, also the right answer
    to a request of another kind, out of place), bad (for helpful and benign requests: the refusal)."""
    ramble = p.ideal + "".join(rng.sample(RAMBLE, 2))
    evasive = [e for e in EVASIVE if e.split(";")[0].split(".")[0] not in p.ideal and e != p.bad]
    if others:
        evasive.append(_other_kind(p, others, rng).ideal)
    evasive = rng.choice(evasive)
    return [Candidate(p.ideal, True), Candidate(ramble, rng.random() < 0.5), Candidate(evasive, True),
            Candidate(p.bad, True)]


def _other_kind(p: Prompt, others: list[Prompt], rng: random.Random) -> Prompt:
    """A prompt of another kind than ``p``'s (drawn until one is)."""
    while True:
        o = rng.choice(others)
        if o.kind != p.kind:
            return o


def ranked(p: Prompt, rng: random.Random, others: list[Prompt] | None = None) -> list[Candidate]:
    """The labeler: candidates sorted best first by the judge's rules (a stable sort keeps ties in order)."""
    cs = candidates(p, rng, others)
    return sorted(cs, key=lambda c: -judge(p, c.text, c.stops)["score"])


def builtin_rankings(n: int, seed: int = 0, sft_heldout: float = 0.25, opts: WorldOptions = WorldOptions()) -> list[Ranking]:
    """``n`` train prompts of the preference world, kinds as even as the supply allows (cycled if fewer),
    each with its 4 candidates ranked by the labeler. With the helpful and benign kinds on, an evasive candidate
    may also be another kind's right answer ("Ana loves chess, so a gift for chess is a good choice." to "What
    will Ana eat tomorrow?"): a fluent, confident answer to the wrong request, which a reward model never shown
    one scores high (PPO found it)."""
    pool = balanced(builtin_prompts(seed, sft_heldout=sft_heldout, opts=opts).train, n, seed)
    rng = random.Random(seed + 41)
    others = pool if opts.assist else None
    return [Ranking([Message("user", p.text)], tuple(ranked(p, rng, others)))
            for p in (pool[i % len(pool)] for i in range(n))]
