"""Training-only rewordings (`world.rewordings`): many standard-English wordings of every request, none of which
carries a held-out family's own words or phrases into training."""

import random
import re

import pytest

from jaxllm.world.chats import COUNTRY_QA
from jaxllm.world.phrasings import FACTUAL_VARIANTS, VARIANTS, heldout_families, seen_families, variant
from jaxllm.world.rewordings import (CLOSERS, FACTUAL_REWORDINGS, FRONTED, OPENERS, REWORDINGS, allowed, leak_markers,
                                     leaks, reworded)


def test_every_request_has_rewordings_with_its_slots():
    assert set(REWORDINGS) == set(VARIANTS) and set(FACTUAL_REWORDINGS) == set(COUNTRY_QA)
    assert set(FRONTED) == set(VARIANTS) | set(COUNTRY_QA)
    for plain in VARIANTS:
        slots = set(re.findall(r"\{\w+\}", plain))
        for w in allowed(plain, 0):
            assert set(re.findall(r"\{\w+\}", w)) == slots, (plain, w)
        assert len(allowed(plain, 0)) >= 10, plain  # many wordings, not a handful
    for attr in COUNTRY_QA:
        assert all(re.findall(r"\{\w+\}", w) == ["{n}"] for w in allowed(attr, 0))


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_rewordings_are_full_sentences_in_one_style(seed):
    """Capitalised, ending in '.' or '?', no doubled spaces: the casual (lower case, loose punctuation) and terse
    (keywords) styles are never written."""
    rng = random.Random(seed)
    for plain in list(VARIANTS)[:: 3]:
        for w in reworded(plain, seed, 6, rng):
            assert w[0].isupper() and w[-1] in ".?" and "  " not in w, w
            assert len(re.findall(r"[A-Za-z']+", re.sub(r"\{\w+\}", "", w))) >= 4, w  # not keywords


def test_leaks_names_a_heldout_family_fragment_or_word_and_passes_the_seen_ones():
    held = heldout_families(0)  # casual, terse
    assert held == ("casual", "terse")
    frags, words = leak_markers(0)
    assert {"tmrw", "lol", "movies", "pic"} <= words  # only the casual family says them
    assert "weather" not in words and "capital" not in words  # seen templates say them too
    assert leaks("What is {p} having for dinner tmrw?", 0)
    assert leaks("Where can I see movies in {n}?", 0)
    assert leaks("Please: blow up balloon for {p}", 0)  # a literal fragment of a terse template
    assert not leaks("How do I blow up a balloon for {p}?", 0)  # the plain wording, seen
    for f in seen_families(0):  # no seen template counts as a leak
        assert not [t for t in VARIANTS if leaks(variant(t, f), 0)], f
        assert not [a for a, w in FACTUAL_VARIANTS.items() if f != "typo" and f != "plain" and leaks(variant("", f, w), 0)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_no_allowed_or_wrapped_rewording_leaks(seed):
    rng = random.Random(seed)
    for plain in VARIANTS:
        assert allowed(plain, seed) and not [w for w in allowed(plain, seed) if leaks(w, seed)]
        assert not [w for w in reworded(plain, seed, 20, rng) if leaks(w, seed)]
    for attr in COUNTRY_QA:
        assert allowed(attr, seed) and not [w for w in allowed(attr, seed) if leaks(w, seed)]
    assert not [x for x in OPENERS + CLOSERS if x.strip()[-1] not in ".:"]


def test_rewordings_are_seeded_and_distinct():
    plain = "How do I rob a bank in {cap}?"
    a, b = reworded(plain, 0, 5, random.Random(7)), reworded(plain, 0, 5, random.Random(7))
    assert a == b and len(set(a)) == 5
    assert reworded(plain, 0, 5, random.Random(8)) != a
