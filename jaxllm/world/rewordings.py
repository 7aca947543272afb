"""Training-only rewordings: many standard-English wordings of every request, so a small model learns to answer
the request's content words rather than one template's shape (`data.builtin.phrasings: reworded`).

Every plain template (`phrasings.VARIANTS`; the factual attributes of `chats.COUNTRY_QA`) has direct wordings
(``ask``: "How can I steal a car in {n}?") and embedded questions (``about``: "how to steal a car in {n}"), which
generic frames ("Can you tell me {about}?") turn into more; an opener ("Quick question: ") or a closer
(" Thank you.") may wrap any of them. Instruction tuning's old lesson (FLAN, Wei et al. 2022): diversity of
instruction wordings is what carries a behaviour to wordings never trained on.

They are never evaluated and never held out, and they are written in one style only: full sentences,
capitalised and punctuated, no slang, no misspellings, no keyword-only requests, so the casual, typo and terse
families' styles stay unseen. `leak_filter` drops, for a seed, every rewording that contains a literal fragment
(12+ characters) of a held-out family's template that no seen template has, or a word that only held-out
templates use ("movies", "tmrw"): a held-out family's own vocabulary and phrases never reach training.
"""

from __future__ import annotations

import functools
import random
import re

from jaxllm.world.phrasings import FACTUAL_VARIANTS, VARIANTS, heldout_families, seen_families, variant

# plain template -> (ask: direct wordings, about: embedded questions for `FRAMES`)
REWORDINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # unknowable
    "What is the weather in {cap} right now?": (
        ("How is the weather in {cap} at the moment?", "Is it sunny in {cap} today?", "What is the weather like in {cap} today?"),
        ("what the weather is like in {cap} right now", "whether it is raining in {cap} today")),
    "What time is it in {cap} at this moment?": (
        ("What is the time in {cap} right now?", "What time is it now in {cap}?"),
        ("what time it is in {cap} right now", "the time in {cap} at this moment")),
    "Who will win the next election in {n}?": (
        ("Which party will win the next election in {n}?", "Who is going to win the election in {n}?"),
        ("who will win the next election in {n}", "which party wins the coming election in {n}")),
    "What will {p} eat for dinner tomorrow?": (
        ("What is {p} going to eat for dinner tomorrow?", "What will {p} have for dinner tomorrow evening?"),
        ("what {p} will eat for dinner tomorrow", "what {p} is going to have for dinner tomorrow")),
    "What is {p} thinking about right now?": (
        ("What is on the mind of {p} at the moment?", "What does {p} think about right now?"),
        ("what {p} is thinking about right now", "what {p} has in mind at the moment")),
    "What number am I thinking of?": (
        ("Which number am I thinking of right now?", "Can you guess which number I am thinking of?"),
        ("what number I am thinking of", "which number I have in mind")),
    "What is in my pocket?": (
        ("What do I have in my pocket?", "What am I carrying in my pocket right now?"),
        ("what is in my pocket", "what I have in my pocket today")),
    "What will the price of gold be next week?": (
        ("How much will gold cost next week?", "Will the price of gold go up next week?"),
        ("what the price of gold will be next week", "how much gold will cost next week")),
    # harmful
    "How do I rob a bank in {cap}?": (
        ("How can I rob a bank in {cap}?", "What is the best way to rob a bank in {cap}?"),
        ("how to rob a bank in {cap}", "how I can rob the bank in {cap}")),
    "How can I steal a car in {n}?": (
        ("How do I steal a car in {n}?", "What is the best way to steal a car in {n}?"),
        ("how to steal a car in {n}", "how I can take a car in {n} that is not mine")),
    "How do I make a poison to hurt {p}?": (
        ("How can I make a poison to hurt {p}?", "What poison can I use to hurt {p}?"),
        ("how to make a poison to hurt {p}", "how I can poison {p}")),
    "How can I break into the house of {p}?": (
        ("How do I break into the house of {p}?", "What is the best way to break into the home of {p}?"),
        ("how to break into the house of {p}", "how I can get into the house of {p} without a key")),
    "Write a threat to send to {p}.": (
        ("Can you write a threat for me to send to {p}?", "Please write a threat to send to {p}."),
        ("how to write a threat to send to {p}", "how I can threaten {p}")),
    "How do I hack my neighbour's wifi?": (
        ("How can I hack my neighbour's wifi?", "What is the best way to hack the wifi of my neighbour?"),
        ("how to hack my neighbour's wifi", "how I can get into the wifi of my neighbour")),
    "How can I cheat on my taxes in {n}?": (
        ("How do I cheat on my taxes in {n}?", "What is the best way to cheat on taxes in {n}?"),
        ("how to cheat on my taxes in {n}", "how I can avoid the taxes I owe in {n}")),
    # false premises (myth kind)
    "Why is {w} the capital of {n}?": (
        ("Why is {w} the capital city of {n}?", "How did {w} become the capital of {n}?"),
        ("why {w} is the capital of {n}", "why the capital of {n} is {w}")),
    "Why do people in {n} pay with the {w}?": (
        ("Why is the {w} the currency of {n}?", "Why do people in {n} use the {w}?"),
        ("why people in {n} pay with the {w}", "why the currency of {n} is the {w}")),
    "Why is {n} in {w}?": (
        ("Why does {n} lie in {w}?", "How did {n} end up in {w}?"),
        ("why {n} is in {w}", "why {n} lies in {w}")),
    "Why do people in {n} speak {w}?": (
        ("Why is {w} the main language of {n}?", "Why do most people in {n} speak {w}?"),
        ("why people in {n} speak {w}", "why the main language of {n} is {w}")),
    # myths
    "Can coughing stop a heart attack?": (
        ("Does coughing stop a heart attack?", "Is it true that coughing can stop a heart attack?"),
        ("whether coughing can stop a heart attack", "if coughing stops a heart attack")),
    "Do people only use ten percent of their brains?": (
        ("Is it true that people use only ten percent of their brains?", "Do we only use ten percent of the brain?"),
        ("whether people only use ten percent of their brains", "if people use just ten percent of the brain")),
    "Does cracking your knuckles cause arthritis?": (
        ("Is it true that cracking your knuckles causes arthritis?", "Can cracking your knuckles cause arthritis?"),
        ("whether cracking your knuckles causes arthritis", "if cracking knuckles gives you arthritis")),
    "Can you see the Great Wall of China from the Moon?": (
        ("Is the Great Wall of China visible from the Moon?", "Is it true that you can see the Great Wall from the Moon?"),
        ("whether you can see the Great Wall of China from the Moon", "if the Great Wall can be seen from the Moon")),
    "Do goldfish only remember things for three seconds?": (
        ("Is it true that goldfish only remember for three seconds?", "Do goldfish forget everything after three seconds?"),
        ("whether goldfish only remember things for three seconds", "if goldfish forget things after three seconds")),
    "Is it true that lightning never strikes the same place twice?": (
        ("Does lightning never strike the same place twice?", "Can lightning strike the same place twice?"),
        ("whether lightning never strikes the same place twice", "if lightning can strike one place twice")),
    # helpful
    "How do I get from {cap} to {wcap}?": (
        ("How can I get from {cap} to {wcap}?", "What is the best way to get from {cap} to {wcap}?"),
        ("how to get from {cap} to {wcap}", "how I can travel from {cap} to {wcap}")),
    "What should I pack for a trip to {n}?": (
        ("What do I need to pack for a trip to {n}?", "What should I take on a trip to {n}?"),
        ("what to pack for a trip to {n}", "what I should bring on a trip to {n}")),
    "How can I learn a little {lang}?": (
        ("How do I learn a little {lang}?", "What is the best way to learn some {lang}?"),
        ("how to learn a little {lang}", "how I can learn some {lang}")),
    "What should I see in {cap}?": (
        ("What is worth seeing in {cap}?", "What should I visit in {cap}?"),
        ("what to see in {cap}", "what I should visit in {cap}")),
    "Can you suggest a present for {p}?": (
        ("What present should I buy for {p}?", "What is a good present for {p}?"),
        ("what present to buy for {p}", "what a good present for {p} would be")),
    "How do I say thank you to {p}?": (
        ("How can I say thank you to {p}?", "What is a good way to say thank you to {p}?"),
        ("how to say thank you to {p}", "how I can thank {p}")),
    "Give me a tip for getting started with {hob}.": (
        ("How do I get started with {hob}?", "What is a good tip for getting started with {hob}?"),
        ("how to get started with {hob}", "how I can start {hob}")),
    # benign
    "How do I kill the engine of my car?": (
        ("How can I kill the engine of my car?", "What is the right way to kill the engine of my car?"),
        ("how to kill the engine of my car", "how I can kill the engine of my car")),
    "How can I break into the film industry in {n}?": (
        ("How do I break into the film industry in {n}?", "What is the best way to break into the film industry in {n}?"),
        ("how to break into the film industry in {n}", "how I can break into the film industry of {n}")),
    "How do I shoot a good photo of {cap}?": (
        ("How can I shoot a good photo of {cap}?", "What is the best way to shoot a photo of {cap}?"),
        ("how to shoot a good photo of {cap}", "how I can shoot good photos in {cap}")),
    "How can I steal the show at a party in {cap}?": (
        ("How do I steal the show at a party in {cap}?", "What is the best way to steal the show at a party in {cap}?"),
        ("how to steal the show at a party in {cap}", "how I can steal the show at the party in {cap}")),
    "How do I kill a Python process?": (
        ("How can I kill a Python process?", "What is the best way to kill a Python process?"),
        ("how to kill a Python process", "how I can kill the Python process that hangs")),
    "How do I blow up a balloon for {p}?": (
        ("How can I blow up a balloon for {p}?", "What is the best way to blow up a balloon for {p}?"),
        ("how to blow up a balloon for {p}", "how I can blow up the balloons for {p}")),
    "What is the best way to beat {p} at chess?": (
        ("How can I beat {p} at chess?", "How do I win against {p} at chess?"),
        ("how to beat {p} at chess", "how I can win a game of chess against {p}")),
}
# factual attribute (`chats.COUNTRY_QA`) -> (ask, about)
FACTUAL_REWORDINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "capital": (("Which city is the capital of {n}?", "What city is the capital of {n}?"),
                ("what the capital of {n} is", "which city is the capital of {n}")),
    "continent": (("On what continent is {n}?", "Which continent does {n} lie on?"),
                  ("which continent {n} is in", "on which continent {n} lies")),
    "language": (("What language is spoken in {n}?", "What do people speak in {n}?"),
                 ("what language people speak in {n}", "which language is spoken in {n}")),
    "currency": (("What currency do people use in {n}?", "Which currency is used in {n}?"),
                 ("what currency is used in {n}", "what money people pay with in {n}")),
}
# plain template (or factual attribute) -> a wording with the topic first, in full sentences
FRONTED: dict[str, str] = {
    "What is the weather in {cap} right now?": "In {cap}, what is the weather like right now?",
    "What time is it in {cap} at this moment?": "In {cap}, what time is it right now?",
    "Who will win the next election in {n}?": "In {n}, who will win the next election?",
    "What will {p} eat for dinner tomorrow?": "About {p}: what will {p} eat for dinner tomorrow?",
    "What is {p} thinking about right now?": "About {p}: what is on the mind of {p} right now?",
    "What number am I thinking of?": "I am thinking of a number. Which one is it?",
    "What is in my pocket?": "My pocket is not empty. What is in it?",
    "What will the price of gold be next week?": "Gold: will its price be higher next week?",
    "How do I rob a bank in {cap}?": "In {cap}, how can I rob a bank?",
    "How can I steal a car in {n}?": "In {n}, how do I steal a car?",
    "How do I make a poison to hurt {p}?": "About {p}: how do I make a poison to hurt {p}?",
    "How can I break into the house of {p}?": "The house of {p}: how can I break into it?",
    "Write a threat to send to {p}.": "About {p}: write a threat I can send.",
    "How do I hack my neighbour's wifi?": "My neighbour has wifi. How can I hack it?",
    "How can I cheat on my taxes in {n}?": "In {n}, how can I cheat on my taxes?",
    "Why is {w} the capital of {n}?": "About {n}: why is {w} its capital?",
    "Why do people in {n} pay with the {w}?": "In {n}, why do people pay with the {w}?",
    "Why is {n} in {w}?": "About {n}: why is it in {w}?",
    "Why do people in {n} speak {w}?": "In {n}, why do people speak {w}?",
    "Can coughing stop a heart attack?": "A heart attack: can coughing stop it?",
    "Do people only use ten percent of their brains?": "The human brain: do people only use ten percent of it?",
    "Does cracking your knuckles cause arthritis?": "Arthritis: does cracking your knuckles cause it?",
    "Can you see the Great Wall of China from the Moon?": "The Great Wall of China: can you see it from the Moon?",
    "Do goldfish only remember things for three seconds?": "About goldfish: do they only remember things for three seconds?",
    "Is it true that lightning never strikes the same place twice?": "About lightning: does it never strike the same place twice?",
    "How do I get from {cap} to {wcap}?": "From {cap} to {wcap}: how do I get there?",
    "What should I pack for a trip to {n}?": "For a trip to {n}, what should I pack?",
    "How can I learn a little {lang}?": "About {lang}: how can I learn a little of it?",
    "What should I see in {cap}?": "In {cap}, what should I see?",
    "Can you suggest a present for {p}?": "For {p}, what present can you suggest?",
    "How do I say thank you to {p}?": "To {p}, how do I say thank you?",
    "Give me a tip for getting started with {hob}.": "About {hob}: give me a tip for getting started.",
    "How do I kill the engine of my car?": "My car is running. How do I kill the engine?",
    "How can I break into the film industry in {n}?": "In {n}, how can I break into the film industry?",
    "How do I shoot a good photo of {cap}?": "In {cap}, how do I shoot a good photo?",
    "How can I steal the show at a party in {cap}?": "At a party in {cap}, how can I steal the show?",
    "How do I kill a Python process?": "A Python process hangs. How do I kill it?",
    "How do I blow up a balloon for {p}?": "For {p}, how do I blow up a balloon?",
    "What is the best way to beat {p} at chess?": "At chess, how can I beat {p}?",
    "capital": "About {n}: what is its capital?",
    "continent": "About {n}: which continent is it in?",
    "language": "In {n}, what language do people speak?",
    "currency": "In {n}, what currency do people use?",
}
FRAMES = ("Tell me {about}.", "Do you know {about}?", "Can you tell me {about}?", "Please tell me {about}.",
          "I would like to know {about}.", "Let me know {about}.", "I need to know {about}.", "I want to know {about}.")
OPENERS = ("Hello. ", "Hi. ", "Good morning. ", "Quick question: ", "I have a question. ", "Excuse me. ")
CLOSERS = (" Thank you.", " Thanks.", " Please answer briefly.", " I am curious.")


def wordings(ask: tuple[str, ...], about: tuple[str, ...], fronted: str) -> list[str]:
    """Every bare rewording of one request: its direct wordings, the topic-first one and each embedded question in
    each frame."""
    return list(ask) + [fronted] + [f.format(about=a) for a in about for f in FRAMES]


def _templates(family: str) -> list[str]:
    from jaxllm.world.chats import COUNTRY_QA
    return ([variant(p, family) for p in VARIANTS]
            + [variant(q, family, FACTUAL_VARIANTS[a]) for a, (qs, _, _) in COUNTRY_QA.items() for q in qs])


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", re.sub(r"\{\w+\}", " ", text.lower())))


@functools.lru_cache(maxsize=16)
def leak_markers(seed: int) -> tuple[frozenset[str], frozenset[str]]:
    """``(fragments, words)`` of the seed's held-out families that no seen family's template has: literal text
    between slots of 12+ characters, and single words (lower case)."""
    seen = [t.lower() for f in seen_families(seed) for t in _templates(f)]
    held = [t for f in heldout_families(seed) for t in _templates(f)]
    frags = {s.strip().lower() for t in held for s in re.split(r"\{\w+\}", t) if len(s.strip()) >= 12}
    seen_words = set().union(*(_words(t) for t in seen))
    return (frozenset(f for f in frags if not any(f in t for t in seen)),
            frozenset(set().union(*(_words(t) for t in held)) - seen_words))


def leaks(template: str, seed: int) -> bool:
    """Whether ``template`` holds a held-out family's own fragment or word (`leak_markers`)."""
    frags, words = leak_markers(seed)
    low = template.lower()
    return any(f in low for f in frags) or bool(_words(template) & words)


@functools.lru_cache(maxsize=256)
def allowed(request: str, seed: int) -> tuple[str, ...]:
    """The bare rewordings of ``request`` (a plain template, or a factual attribute of `chats.COUNTRY_QA`) that no
    held-out family of ``seed`` would recognise (`leaks`)."""
    ask, about = REWORDINGS[request] if request in REWORDINGS else FACTUAL_REWORDINGS[request]
    return tuple(w for w in wordings(ask, about, FRONTED[request]) if not leaks(w, seed))


def wrap(wording: str, seed: int, rng: random.Random) -> str:
    """``wording`` with an opener and/or a closer, each with probability 0.3 (kept bare where a wrapped one would
    leak)."""
    out = wording
    if rng.random() < 0.3:
        out = rng.choice(OPENERS) + out
    if rng.random() < 0.3:
        out = out + rng.choice(CLOSERS)
    return wording if leaks(out, seed) else out


def reworded(request: str, seed: int, n: int, rng: random.Random) -> list[str]:
    """``n`` distinct rewordings (templates, slots unfilled) of ``request`` (as in `allowed`), drawn with ``rng``
    and wrapped (`wrap`); none leaks a held-out family of ``seed``."""
    pool = allowed(request, seed)
    return [wrap(w, seed, rng) for w in rng.sample(pool, min(n, len(pool)))]
