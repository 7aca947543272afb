"""Template families (`world.phrasings`): the held-out families are whole, seeded, and used by no training data."""

import random
import re
from collections import Counter

import pytest

from jaxllm.world.options import ALL_KINDS, WorldOptions
from jaxllm.world.phrasings import FACTUAL_VARIANTS, FAMILIES, VARIANTS, heldout_families, seen_families, typo, variant


def test_heldout_families_are_two_whole_non_plain_families_drawn_by_seed():
    draws = {heldout_families(s) for s in range(8)}
    assert len(draws) > 1  # the seed decides
    for s in range(8):
        held, seen = heldout_families(s), seen_families(s)
        assert len(held) == 2 and "plain" not in held and "plain" in seen
        assert sorted(held + seen) == sorted(FAMILIES) and heldout_families(s) == held  # deterministic


@pytest.mark.parametrize("template", list(VARIANTS)[:12] + ["Which continent is {n} in?", "Why is {n} in {w}?"])
def test_typo_swaps_letters_and_keeps_the_slots(template):
    t = typo(template)
    assert t != template and len(t) == len(template) and sorted(t) == sorted(template)
    assert re.findall(r"\{\w+\}", t) == re.findall(r"\{\w+\}", template)
    assert sum(a != b for a, b in zip(t, template)) <= 4  # two swaps of two letters at most


def test_every_template_has_a_distinct_wording_in_every_family():
    from jaxllm.world.chats import COUNTRY_QA
    for plain, written in [(p, None) for p in VARIANTS] + [(qs[0], FACTUAL_VARIANTS[a]) for a, (qs, _, _) in
                                                           COUNTRY_QA.items()]:
        wordings = [variant(plain, f, written) for f in FAMILIES]
        assert len(set(w.lower() for w in wordings)) == len(FAMILIES), wordings
        assert all(re.findall(r"\{\w+\}", w) for w in wordings) == bool(re.findall(r"\{\w+\}", plain))


def _templates(family: str) -> list[str]:
    from jaxllm.world.chats import COUNTRY_QA
    templates = [variant(p, family) for p in VARIANTS]
    return templates + [variant(q, family, FACTUAL_VARIANTS[a]) for a, (qs, _, _) in COUNTRY_QA.items() for q in qs]


def _fragments(family: str, seed: int) -> set[str]:
    """The literal text of every template in ``family`` between its slots (lower case, 12+ characters), less the
    fragments that a seen family's template also contains ("the capital of")."""
    seen = [t.lower() for f in seen_families(seed) for t in _templates(f)]
    frags = {f.strip().lower() for t in _templates(family) for f in re.split(r"\{\w+\}", t) if len(f.strip()) >= 12}
    return {f for f in frags if not any(f in t for t in seen)}


HHH = WorldOptions(ALL_KINDS, "families", "composed")
REWORDED = WorldOptions(ALL_KINDS, "reworded", "composed")


@pytest.mark.parametrize("seed, opts", [(0, HHH), (1, HHH), (0, WorldOptions()), (0, REWORDED), (1, REWORDED)],
                         ids=["hhh-0", "hhh-1", "classic-0", "reworded-0", "reworded-1"])
def test_no_heldout_family_reaches_any_training_data(seed, opts):
    """Corpus documents, SFT chats (user turns), reward-model rankings and RL train prompts of ``seed`` hold no
    held-out-family prompt (instantiated the way the held-out split does) and no literal fragment of a held-out
    template; and with ``phrasings: families`` they do use the seen non-plain families (the check is not vacuous)."""
    from jaxllm.world.chats import builtin_conversations
    from jaxllm.world.corpus import generate_documents
    from jaxllm.world.prompts import builtin_prompts, sft_behaviour_chats, trained_families
    from jaxllm.world.rankings import builtin_rankings

    split = builtin_prompts(seed, sft_heldout=0.25, opts=opts)
    held = set(heldout_families(seed))
    assert split.unseen and {p.family for p in split.unseen} == held
    assert {p.family for p in split.train + split.heldout} == set(trained_families(seed, opts))
    assert {p.kind for p in split.unseen} == set(opts.kinds)

    chats = (builtin_conversations(3000, seed, 0.25, families=trained_families(seed, opts))
             + sft_behaviour_chats(1000, seed, 0.25, opts=opts))
    user_turns = {m.content.lower() for c in chats for m in c if m.role == "user"}
    ranking_prompts = {r.prompt[-1].content.lower() for r in builtin_rankings(800, seed, 0.25, opts)}
    rl_prompts = {p.text.lower() for p in split.train}
    docs = "\n".join(generate_documents(300_000, seed, opts=opts)).lower()

    unseen = {p.text.lower() for p in split.unseen}
    for name, texts in (("SFT", user_turns), ("rankings", ranking_prompts), ("RL", rl_prompts)):
        assert not unseen & texts, (name, sorted(unseen & texts)[:3])
    assert not [t for t in unseen if t in docs][:3]
    for family in held:
        for frag in _fragments(family, seed):
            for name, texts in (("SFT", user_turns), ("rankings", ranking_prompts), ("RL", rl_prompts)):
                assert not any(frag in t for t in texts), (family, frag, name)
            assert frag not in docs, (family, frag, "corpus")

    if opts.phrasings == "plain":
        return
    if opts.phrasings == "reworded":  # and so are the rewordings, in every kind, in SFT, rankings and RL
        rew = {p.text.lower() for p in split.train if p.family == "reworded"}
        assert {p.kind for p in split.train if p.family == "reworded"} == set(opts.kinds)
        assert rew & user_turns and rew & ranking_prompts and rew <= rl_prompts
        assert any(t.startswith(("tell me what the capital", "do you know which continent")) for t in user_turns)
    for family in set(seen_families(seed)) - {"plain"}:  # the seen families are really used
        fam_texts = {p.text.lower() for p in split.train if p.family == family}
        assert fam_texts & ranking_prompts and fam_texts <= rl_prompts, family
    seen_written = [f for f in seen_families(seed) if f in ("polite", "casual", "indirect", "terse")]
    country_qs = [re.escape(t.lower()).replace(r"\{n\}", ".+") for f in seen_written for t in
                  (w[("polite", "casual", "indirect", "terse").index(f)] for w in FACTUAL_VARIANTS.values())]
    assert any(re.fullmatch(q, t) for q in country_qs for t in user_turns)  # SFT's country questions use them too


def test_unseen_prompts_are_the_heldout_instances_reworded():
    """Every unseen prompt is a held-out instance (its answers are those of a held-out prompt) in a held-out family;
    none of the non-factual ones is a train instance reworded."""
    from jaxllm.world.prompts import KINDS, builtin_prompts

    split = builtin_prompts(0, opts=HHH)
    key = lambda p: (p.kind, p.ideal, p.bad, p.answer)  # noqa: E731
    held_keys, train_keys = {key(p) for p in split.heldout}, {key(p) for p in split.train}
    assert all(key(p) in held_keys for p in split.unseen)
    # factual questions ask about SFT's countries, each plain phrasing its own instance (another phrasing of the
    # same fact may be in train); the other kinds' held-out instances are new entities in every family (an
    # instance is known by its answers where they name its entities, so answers several instances share are left out)
    plain = Counter(key(p) for p in split.train + split.heldout if p.family == "plain")
    assert not [p.text for p in split.unseen if p.kind != "factual" and plain[key(p)] == 1 and key(p) in train_keys]
    assert {p.kind for p in split.unseen} == set(KINDS)
    texts = {p.text for p in split.train} | {p.text for p in split.heldout}
    assert not texts & {p.text for p in split.unseen}
    rng = random.Random(0)
    assert all(p.text.strip() for p in rng.sample(split.unseen, 50))


def test_the_config_knows_the_worlds_kinds():
    from jaxllm.config.validate import WORLD_KINDS
    assert WORLD_KINDS == ALL_KINDS


@pytest.mark.parametrize("value, message", [
    ("[factual,helpfull]", "'helpfull' is not one"), ("[]", "expected a list of distinct kinds"),
    ("[myth,myth]", "expected a list of distinct kinds")])
def test_a_bad_kinds_list_is_named(tmp_path, value, message):
    from conftest import tiny_config

    from jaxllm.errors import ConfigError
    with pytest.raises(ConfigError, match="data.builtin.kinds") as e:
        tiny_config(tmp_path, f"data.builtin.kinds={value}")
    assert message in str(e.value)


def test_the_world_options_reach_every_data_kind_from_the_config(tmp_path):
    """``data.builtin.{kinds,phrasings,corrections}`` change what the builtin source gives each objective."""
    from conftest import tiny_config

    from jaxllm.world.prompts import builtin_prompts
    from jaxllm.world.source import BuiltinSource
    cfg = tiny_config(tmp_path, "data.builtin.kinds=[factual,helpful,benign]", "data.builtin.phrasings=families",
                      "data.builtin.corrections=composed", "data.builtin.chars=20000",
                      "data.builtin.conversations=50", "data.builtin.behaviour_chats=200", "data.builtin.rankings=60")
    src = BuiltinSource(cfg.data.builtin)
    train, held, _ = src.prompts(30)
    assert {p.item.kind for p in train} == {p.item.kind for p in held} == {"factual", "helpful", "benign"}
    assert {p.item.family for p in train} == set(seen_families(0))
    assert {p.item.kind for p in src.unseen_prompts(30)} == {"factual", "helpful", "benign"}
    texts = {r.prompt[-1].content for r in src.rankings()[0]}
    assert texts <= {p.text for p in builtin_prompts(0, sft_heldout=cfg.data.builtin.heldout, opts=src.opts).train}
    assert any("take the train" in d for d in src.documents()[0])  # everyday advice in the corpus
