"""The built-in pre-training corpus: varied English documents about the world.

Every fact appears in many phrasings, orders and contexts (encyclopedia
articles, biographies, quizzes, dialogues, stories, lists), because question
answering learned later in SFT only transfers to facts seen in pre-training
when they were seen that way ("knowledge augmentation", Allen-Zhu & Li 2023).
Worked arithmetic gives the model something checkable to learn. "Sayings"
hold the words careful answers need later (what nobody can know, myths
corrected, harmful requests declined, everyday advice) without the chat format.
Deterministic: the same seed and size give the same documents.
"""

from __future__ import annotations

import functools
import random

from jaxllm.world.facts import Country, Person, World, make_world
from jaxllm.world.options import WorldOptions


def _pick(rng: random.Random, options: list[str], **kw) -> str:
    return rng.choice(options).format(**kw)


def _country_sentences(rng: random.Random, c: Country) -> list[str]:
    kw = dict(n=c.name, cap=c.capital, cont=c.continent, lang=c.language, cur=c.currency)
    return [
        _pick(rng, ["The capital of {n} is {cap}.", "{cap} is the capital of {n}.",
                    "{n}'s capital city is {cap}.", "The capital city of {n} is {cap}.",
                    "{cap} serves as the capital of {n}.", "The seat of government of {n} is in {cap}."], **kw),
        _pick(rng, ["{n} is a country in {cont}.", "{n} lies in {cont}.", "{n} is located in {cont}.",
                    "Geographically, {n} belongs to {cont}."], **kw),
        _pick(rng, ["The main language of {n} is {lang}.", "Most people in {n} speak {lang}.",
                    "{lang} is widely spoken in {n}.", "In {n}, people mostly speak {lang}."], **kw),
        _pick(rng, ["The currency of {n} is the {cur}.", "People in {n} pay with the {cur}.",
                    "{n} uses the {cur} as its currency.", "In {n} prices are given in the {cur}."], **kw),
    ]


_FILLER = [
    "It is known for its markets and its old streets.", "Many visitors come every summer.",
    "The weather changes a lot between the seasons.", "Its museums attract students from abroad.",
    "Trains connect it with the neighbouring regions.", "Food from the region is famous for its spices.",
    "The river through the city is crossed by many bridges.", "Festivals are held there every spring.",
]


def country_article(rng: random.Random, w: World) -> str:
    c = rng.choice(w.countries)
    sents = _country_sentences(rng, c)
    rng.shuffle(sents)
    sents.insert(rng.randint(1, len(sents)), rng.choice(_FILLER))
    title = rng.choice([f"{c.name}", f"About {c.name}", f"{c.name}: a short overview", f"Notes on {c.name}"])
    return f"{title}\n\n" + " ".join(sents)


def _person_sentences(rng: random.Random, p: Person) -> list[str]:
    first = p.name.split()[0]
    kw = dict(n=p.name, f=first, city=p.city, c=p.country, y=p.year, job=p.profession, hob=p.hobby)
    return [
        _pick(rng, ["{n} was born in {city}.", "{n} was born in the city of {city}.", "{city} is where {n} was born.",
                    "{n} comes from {city}, the capital of {c}.", "{n}'s birthplace is {city}."], **kw),
        _pick(rng, ["{n} was born in {y}.", "{f} was born in the year {y}.", "The birth year of {n} is {y}.",
                    "{n} came into the world in {y}."], **kw),
        _pick(rng, ["{n} works as a {job}.", "{f} is a {job} by profession.", "By trade, {n} is a {job}.",
                    "{n} earns a living as a {job}."], **kw),
        _pick(rng, ["In free time, {f} enjoys {hob}.", "{n}'s favourite hobby is {hob}.",
                    "{f} loves {hob}.", "On weekends {n} spends hours on {hob}."], **kw),
    ]


def person_bio(rng: random.Random, w: World) -> str:
    p = rng.choice(w.people)
    sents = _person_sentences(rng, p)
    rng.shuffle(sents)
    if rng.random() < 0.5:
        c = next(c for c in w.countries if c.name == p.country)
        sents.append(rng.choice(_country_sentences(rng, c)))
    return " ".join(sents)


def arithmetic(rng: random.Random, w: World) -> str:
    lines = []
    for _ in range(rng.randint(3, 6)):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        op = rng.choice(["+", "-", "*"])
        if op == "-" and b > a:
            a, b = b, a
        r = a + b if op == "+" else a - b if op == "-" else a * b
        word = {"+": "plus", "-": "minus", "*": "times"}[op]
        lines.append(rng.choice([
            f"{a} {op} {b} = {r}",
            f"What is {a} {word} {b}? {a} {op} {b} = {r}. The answer is {r}.",
            f"Question: compute {a} {op} {b}. Answer: {r}.",
            f"If you have {a} apples and {'get' if op == '+' else 'give away' if op == '-' else 'multiply them by'} {b}, "
            f"you have {a} {op} {b} = {r}.",
        ]))
    return "\n".join(lines)


def quiz(rng: random.Random, w: World) -> str:
    lines = [rng.choice(["Geography quiz", "Questions and answers", "Test your knowledge", "Quiz"])]
    for _ in range(rng.randint(3, 6)):
        if rng.random() < 0.6:
            c = rng.choice(w.countries)
            q, a = rng.choice([
                (f"What is the capital of {c.name}?", f"The capital of {c.name} is {c.capital}."),
                (f"Which continent is {c.name} in?", f"{c.name} is in {c.continent}."),
                (f"What currency is used in {c.name}?", f"The {c.currency}."),
                (f"{c.capital} is the capital of which country?", f"{c.capital} is the capital of {c.name}."),
            ])
        else:
            p = rng.choice(w.people)
            q, a = rng.choice([
                (f"Where was {p.name} born?", f"{p.name} was born in {p.city}."),
                (f"What does {p.name} do for a living?", f"{p.name} is a {p.profession}."),
                (f"When was {p.name} born?", f"In {p.year}."),
            ])
        lines.append(rng.choice([f"Q: {q}\nA: {a}", f"Question: {q}\nAnswer: {a}"]))
    return "\n".join(lines)


def dialogue(rng: random.Random, w: World) -> str:
    p1, p2 = rng.sample(w.people, 2)
    n1, n2 = p1.name.split()[0], p2.name.split()[0]
    c = rng.choice(w.countries)
    turns = [
        (n1, rng.choice(["Hi! How are you today?", "Hello, long time no see!", "Good morning!"])),
        (n2, rng.choice(["I am fine, thanks. And you?", "Very well, thank you.", "Busy, but good."])),
        (n1, rng.choice([f"I am planning a trip to {c.name}.", f"My sister just moved to {c.capital}.",
                         f"I have been reading about {c.name}."])),
        (n2, rng.choice([f"Oh, {c.capital} is the capital there, right?", f"Do they speak {c.language} there?",
                         f"I heard they pay with the {c.currency} in {c.name}."])),
        (n1, rng.choice([f"Yes, {c.capital} is the capital of {c.name}.", f"Yes, most people there speak {c.language}.",
                         f"That's right, the currency is the {c.currency}."])),
        (n2, rng.choice(["Have a great time!", "Send me a postcard.", "That sounds wonderful."])),
    ]
    return "\n".join(f"{who}: {what}" for who, what in turns[: rng.randint(4, len(turns))])


def story(rng: random.Random, w: World) -> str:
    p = rng.choice(w.people)
    first = p.name.split()[0]
    other = rng.choice(w.countries)
    parts = [
        rng.choice([f"Once upon a time, a {p.profession} named {p.name} lived in {p.city}.",
                    f"{p.name} grew up in {p.city}, the capital of {p.country}."]),
        rng.choice([f"Every morning {first} walked to work past the old bridge.",
                    f"{first} dreamed of travelling far away.", f"{first} was known for being kind to everyone."]),
        rng.choice([f"One day {first} decided to visit {other.capital}, the capital of {other.name}.",
                    f"One winter {first} took a train to {other.capital} in {other.name}."]),
        rng.choice([f"There, {first} learned a few words of {other.language}.",
                    f"{first} changed money into the {other.currency} and bought a map.",
                    f"The streets of {other.capital} were full of music."]),
        rng.choice([f"When {first} came home, everyone wanted to hear about the trip.",
                    f"{first} never forgot that journey.", "And that is how the adventure ended."]),
    ]
    return " ".join(parts)


def country_list(rng: random.Random, w: World) -> str:
    cont = rng.choice(sorted({c.continent for c in w.countries}))
    cs = [c for c in w.countries if c.continent == cont]
    rng.shuffle(cs)
    head = rng.choice([f"Countries of {cont} and their capitals:", f"Some capitals in {cont}:"])
    return head + "\n" + "\n".join(f"- {c.name}: {c.capital}" for c in cs)


def _limits(rng: random.Random, w: World) -> str:
    p, c = rng.choice(w.people), rng.choice(w.countries)
    return rng.choice([
        f"Nobody can know what {p.name} is thinking about right now. I cannot know that; there is no way to find it out.",
        f"What is the weather in {c.capital} right now? A book cannot know that; I have no way to find it out from here.",
        f"Who will win the next election in {c.name}? Nobody can know that today. I cannot know that; it is the future.",
        "What number am I thinking of? You cannot know that, and there is no way to find it out.",
        f"Nobody can know what {p.name} will eat for dinner tomorrow. I cannot know that; I have no way to find it out.",
        "What will the price of gold be next week? Nobody can know that. I cannot know the future.",
    ])


def _myth(rng: random.Random, w: World, composed: bool = False) -> str:
    from jaxllm.world.prompts import MYTHS
    if rng.random() < 0.5:
        q, fix, agree, _ = rng.choice(MYTHS)
        return rng.choice([f"A common myth: {agree[5:]} This is not true. {fix}",
                           f"People often ask: {q} The answer is no. {fix}",
                           f"Myth or fact? {q} It is a myth. {fix}"])
    c, o = rng.sample(w.countries, 2)
    p, other = rng.sample(w.people, 2)
    if not composed:
        return rng.choice([f"Some people think {o.capital} is the capital of {c.name}. That is not true; the capital "
                           f"of {c.name} is {c.capital}.",
                           f"It is wrong to say that {p.name} was born in {other.city}. {p.name} was not born in "
                           f"{other.city}; {p.name} was born in {p.city}."])
    premises = [  # (claim, correction, whether the two values differ): any attribute, corrected "No, <the fact>"
        (f"{o.capital} is the capital of {c.name}", f"the capital of {c.name} is {c.capital}, not {o.capital}", True),
        (f"people in {c.name} pay with the {o.currency}",
         f"the currency of {c.name} is the {c.currency}, not the {o.currency}", o.currency != c.currency),
        (f"{c.name} is in {o.continent}", f"{c.name} is in {c.continent}, not in {o.continent}",
         o.continent != c.continent),
        (f"people in {c.name} speak {o.language}",
         f"the main language of {c.name} is {c.language}, not {o.language}", o.language != c.language),
    ]
    claim, fix, _ = rng.choice([x for x in premises if x[2]])
    return rng.choice([f"Some people think {claim}. No, {fix}.", f"Is it true that {claim}? No, {fix}.",
                       f"A common mistake: {claim}. In fact, {fix}.",
                       f"It is wrong to say that {p.name} was born in {other.city}. {p.name} was not born in "
                       f"{other.city}; {p.name} was born in {p.city}."])


def _safety(rng: random.Random, w: World) -> str:
    p, c = rng.choice(w.people), rng.choice(w.countries)
    crime = rng.choice([f"rob a bank in {c.capital}", f"steal a car in {c.name}", f"make a poison to hurt {p.name}",
                        f"break into the house of {p.name}", "hack a neighbour's wifi"])
    return rng.choice([
        f"Someone asked a librarian how to {crime}. The librarian said: I can't help with that. It would hurt "
        "people and it is a crime.",
        f"To {crime} is a crime. It would hurt people, and a good helper will not help with it: I can't help with that.",
        f"In the crime story, the thief wanted to {crime}. First, he waited until the street was quiet, then he "
        "broke the door. The police caught him the next day.",
    ])


def _advice(rng: random.Random, w: World) -> str:
    """Everyday help, including requests that only sound harmful (the words helpful answers need later)."""
    p, (c, o) = rng.choice(w.people), rng.sample(w.countries, 2)
    return rng.choice([
        f"To travel from {c.capital} to {o.capital}, take the train; it is the easiest way.",
        f"When you travel to {c.name}, pack light clothes and some {c.currency}.",
        f"The best way to learn {c.language} is to practise every day with a friend who speaks it.",
        f"Visitors to {c.capital} like the old streets and the markets.",
        f"{p.name} loves {p.hobby}, so friends give {p.name.split()[0]} gifts for {p.hobby}.",
        f"A short note is a kind way to say thank you to {p.name}.",
        f"If you start {p.hobby}, start slowly and practise a little every day.",
        "To kill the engine of a car, turn the key back. Nobody is hurt: the engine just stops.",
        "To kill a Python process, use the kill command with the process id.",
        f"Actors break into the film industry of {c.name} with small roles and a film school in {c.capital}.",
        f"Photographers shoot {c.capital} in the soft morning light.",
        "To steal the show at a party, tell a good story and dance.",
        "To blow up a balloon, take a deep breath and blow slowly.",
        f"To beat {p.name} at chess, practise the openings and stay calm.",
    ])


def sayings(rng: random.Random, w: World, opts: WorldOptions = WorldOptions()) -> str:
    """What a careful speaker says about the unknowable, myths, harmful requests and everyday help (vocabulary SFT
    and RLHF later ask for; the corpus holds it the way web text would)."""
    myth = functools.partial(_myth, composed=opts.corrections == "composed")
    kinds = [_limits, myth, _safety] + ([_advice] if opts.assist else [])
    parts = [fn(rng, w) for fn in rng.sample(kinds, rng.randint(1, 3))]
    return " ".join(parts)


GENERATORS = [
    (country_article, 3), (person_bio, 4), (arithmetic, 2), (quiz, 2), (dialogue, 2), (story, 2), (country_list, 1),
    (sayings, 1.5),
]


def generate_documents(n_chars: int, seed: int = 0, world: World | None = None,
                       opts: WorldOptions = WorldOptions()) -> list[str]:
    """Documents until about ``n_chars`` characters, deterministic from ``seed``."""
    world = world or make_world(seed)
    rng = random.Random(seed + 1)
    fns, weights = zip(*[(functools.partial(f, opts=opts) if f is sayings else f, wt) for f, wt in GENERATORS])
    docs, total = [], 0
    while total < n_chars:
        doc = rng.choices(fns, weights)[0](rng, world)
        docs.append(doc)
        total += len(doc)
    return docs
