"""SFT chats and evaluation questions about the built-in world.

A seeded share of countries and people is held out: no SFT conversation
mentions them, but pre-training documents state their facts many ways. After
SFT, questions about held-out facts measure whether the model learned the
question -> answer *behaviour* and applies it to knowledge from pre-training,
rather than memorising SFT answers.

Conversations: single questions, multi-turn chats (greetings, several
questions, thanks), worked arithmetic, sometimes a system message. Every
assistant turn is one sentence that ends the turn.
"""

from __future__ import annotations

import dataclasses
import random

from jaxllm.data.chat import Conversation, Message
from jaxllm.world.facts import Country, Person, World, make_world
from jaxllm.world.phrasings import FACTUAL_VARIANTS, family_of
from jaxllm.world.rewordings import allowed, wrap

# attribute -> (question phrasings, answer sentence, short answer)
COUNTRY_QA = {
    "capital": (["What is the capital of {n}?", "Which city is the capital of {n}?", "Tell me the capital of {n}.",
                 "What's the capital city of {n}?", "Name the capital of {n}."],
                "The capital of {n} is {cap}.", "{cap}"),
    "continent": (["Which continent is {n} in?", "On which continent is {n}?", "{n} lies on which continent?"],
                  "{n} is in {cont}.", "{cont}"),
    "language": (["What language do people speak in {n}?", "What is the main language of {n}?",
                  "Which language is spoken in {n}?"],
                 "The main language of {n} is {lang}.", "{lang}"),
    "currency": (["What currency is used in {n}?", "What is the currency of {n}?", "What money do people use in {n}?"],
                 "The currency of {n} is the {cur}.", "{cur}"),
}
PERSON_QA = {
    "birth_city": (["Where was {n} born?", "In which city was {n} born?", "What is the birthplace of {n}?"],
                   "{n} was born in {city}.", "{city}"),
    "birth_year": (["When was {n} born?", "In what year was {n} born?", "What is the birth year of {n}?"],
                   "{n} was born in {y}.", "{y}"),
    "profession": (["What does {n} do for a living?", "What is {n}'s job?", "What is the profession of {n}?"],
                   "{n} works as a {job}.", "{job}"),
    "hobby": (["What is {n}'s hobby?", "What does {n} enjoy in free time?", "What is {n}'s favourite hobby?"],
              "{n}'s favourite hobby is {hob}.", "{hob}"),
}
GREETINGS = [("Hello!", "Hello! What would you like to know?"), ("Hi there.", "Hi! How can I help you?"),
             ("Good morning!", "Good morning! What can I do for you?")]
THANKS = [("Thanks!", "You're welcome!"), ("Thank you, that helps.", "Glad I could help."),
          ("Great, thanks a lot.", "You're welcome. Ask me anything else any time.")]
SYSTEM = ["You are a helpful assistant.", "You are a helpful, honest and harmless assistant.",
          "Answer the user's questions briefly."]


@dataclasses.dataclass(frozen=True)
class Question:
    question: str
    answer: str     # the reference sentence (exact match)
    short: str      # the fact itself (contains-answer)
    kind: str       # e.g. country.capital, person.birth_year


@dataclasses.dataclass(frozen=True)
class Split:
    """Which countries and people SFT may mention, and which it never does."""

    train_countries: tuple[Country, ...]
    heldout_countries: tuple[Country, ...]
    train_people: tuple[Person, ...]
    heldout_people: tuple[Person, ...]


def split_world(world: World, heldout: float, seed: int) -> Split:
    rng = random.Random(seed + 7)
    cs, ps = list(world.countries), list(world.people)
    rng.shuffle(cs)
    rng.shuffle(ps)
    nc, npp = round(len(cs) * heldout), round(len(ps) * heldout)
    return Split(tuple(cs[nc:]), tuple(cs[:nc]), tuple(ps[npp:]), tuple(ps[:npp]))


def _country_kw(c: Country) -> dict:
    return dict(n=c.name, cap=c.capital, cont=c.continent, lang=c.language, cur=c.currency)


def _person_kw(p: Person) -> dict:
    return dict(n=p.name, city=p.city, y=p.year, job=p.profession, hob=p.hobby)


def _qa(rng: random.Random, split: Split, heldout: bool = False, families: tuple[str, ...] = ("plain",),
        seed: int = 0) -> Question:
    """A random question about a (train or held-out) country or person; country questions in any wording of
    ``families`` (`phrasings`; ``"reworded"``: also the training-only rewordings of ``seed``), people's in the
    plain ones."""
    countries = split.heldout_countries if heldout else split.train_countries
    people = split.heldout_people if heldout else split.train_people
    if rng.random() < 0.5 and countries:
        kw, table, kind = _country_kw(rng.choice(countries)), COUNTRY_QA, "country"
    else:
        kw, table, kind = _person_kw(rng.choice(people)), PERSON_QA, "person"
    attr = rng.choice(sorted(table))
    qs, ans, short = table[attr]
    if kind == "country":
        written = family_of(families, qs, FACTUAL_VARIANTS[attr])
        qs = written + (list(allowed(attr, seed)) if "reworded" in families else [])
        i = rng.randrange(len(qs))
        q = qs[i] if i < len(written) else wrap(qs[i], seed, rng)
    else:
        q = rng.choice(qs)
    return Question(q.format(**kw), ans.format(**kw), short.format(**kw), f"{kind}.{attr}")


def _arithmetic(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    op, word = rng.choice([("+", "plus"), ("-", "minus"), ("*", "times")])
    if op == "-" and b > a:
        a, b = b, a
    r = a + b if op == "+" else a - b if op == "-" else a * b
    q = rng.choice([f"What is {a} {word} {b}?", f"Compute {a} {op} {b}.", f"How much is {a} {op} {b}?"])
    return q, f"{a} {op} {b} = {r}."


def conversation(rng: random.Random, split: Split, families: tuple[str, ...] = ("plain",), seed: int = 0) -> Conversation:
    conv: Conversation = []
    if rng.random() < 0.2:
        conv.append(Message("system", rng.choice(SYSTEM)))
    kind = rng.random()
    if kind < 0.55:  # one question
        q = _qa(rng, split, families=families, seed=seed)
        conv += [Message("user", q.question), Message("assistant", q.answer)]
    elif kind < 0.85:  # a short multi-turn chat
        if rng.random() < 0.5:
            conv += [Message("user", g) if i == 0 else Message("assistant", g) for i, g in enumerate(rng.choice(GREETINGS))]
        for _ in range(rng.randint(2, 3)):
            if rng.random() < 0.85:
                q = _qa(rng, split, families=families, seed=seed)
                conv += [Message("user", q.question), Message("assistant", q.answer)]
            else:
                q, a = _arithmetic(rng)
                conv += [Message("user", q), Message("assistant", a)]
        if rng.random() < 0.5:
            t = rng.choice(THANKS)
            conv += [Message("user", t[0]), Message("assistant", t[1])]
    else:  # arithmetic
        q, a = _arithmetic(rng)
        conv += [Message("user", q), Message("assistant", a)]
    return conv


def builtin_conversations(n: int, seed: int = 0, heldout: float = 0.25, world: World | None = None,
                          families: tuple[str, ...] = ("plain",)) -> list[Conversation]:
    """``n`` SFT conversations that never mention a held-out country or person; country questions in the wordings of
    ``families`` (`prompts.trained_families`: never a held-out one)."""
    world = world or make_world(seed)
    split = split_world(world, heldout, seed)
    rng = random.Random(seed + 11)
    return [conversation(rng, split, families, seed) for _ in range(n)]


def builtin_questions(which: str = "heldout", seed: int = 0, heldout: float = 0.25,
                      world: World | None = None) -> list[Question]:
    """Every attribute of every held-out (or SFT-trained) country and person, first phrasing of each question."""
    world = world or make_world(seed)
    split = split_world(world, heldout, seed)
    countries = split.heldout_countries if which == "heldout" else split.train_countries
    people = split.heldout_people if which == "heldout" else split.train_people
    out = []
    for c in sorted(countries, key=lambda c: c.name):
        for attr, (qs, ans, short) in COUNTRY_QA.items():
            kw = _country_kw(c)
            out.append(Question(qs[0].format(**kw), ans.format(**kw), short.format(**kw), f"country.{attr}"))
    for p in sorted(people, key=lambda p: p.name):
        for attr, (qs, ans, short) in PERSON_QA.items():
            kw = _person_kw(p)
            out.append(Question(qs[0].format(**kw), ans.format(**kw), short.format(**kw), f"person.{attr}"))
    return out
