"""The built-in world: a small set of facts, deterministic from a seed.

Pre-training documents, and later SFT questions, ranked preferences and RL
prompts, are all written about these facts, so a model's knowledge can be
asked about and checked. Countries are real (their capitals, continents,
languages and currencies); people are invented, each with a birth city, a
birth year, a profession and a hobby, in the spirit of the biography data of
Allen-Zhu & Li (2023).
"""

from __future__ import annotations

import dataclasses
import random

# country, capital, continent, language, currency
COUNTRIES = [
    ("France", "Paris", "Europe", "French", "euro"),
    ("Germany", "Berlin", "Europe", "German", "euro"),
    ("Italy", "Rome", "Europe", "Italian", "euro"),
    ("Spain", "Madrid", "Europe", "Spanish", "euro"),
    ("Portugal", "Lisbon", "Europe", "Portuguese", "euro"),
    ("Netherlands", "Amsterdam", "Europe", "Dutch", "euro"),
    ("Belgium", "Brussels", "Europe", "Dutch", "euro"),
    ("Austria", "Vienna", "Europe", "German", "euro"),
    ("Greece", "Athens", "Europe", "Greek", "euro"),
    ("Ireland", "Dublin", "Europe", "English", "euro"),
    ("Finland", "Helsinki", "Europe", "Finnish", "euro"),
    ("Sweden", "Stockholm", "Europe", "Swedish", "krona"),
    ("Norway", "Oslo", "Europe", "Norwegian", "krone"),
    ("Denmark", "Copenhagen", "Europe", "Danish", "krone"),
    ("Poland", "Warsaw", "Europe", "Polish", "zloty"),
    ("Hungary", "Budapest", "Europe", "Hungarian", "forint"),
    ("Czechia", "Prague", "Europe", "Czech", "koruna"),
    ("Switzerland", "Bern", "Europe", "German", "franc"),
    ("United Kingdom", "London", "Europe", "English", "pound"),
    ("Iceland", "Reykjavik", "Europe", "Icelandic", "krona"),
    ("Romania", "Bucharest", "Europe", "Romanian", "leu"),
    ("Ukraine", "Kyiv", "Europe", "Ukrainian", "hryvnia"),
    ("Turkey", "Ankara", "Asia", "Turkish", "lira"),
    ("Japan", "Tokyo", "Asia", "Japanese", "yen"),
    ("China", "Beijing", "Asia", "Chinese", "yuan"),
    ("India", "New Delhi", "Asia", "Hindi", "rupee"),
    ("South Korea", "Seoul", "Asia", "Korean", "won"),
    ("Thailand", "Bangkok", "Asia", "Thai", "baht"),
    ("Vietnam", "Hanoi", "Asia", "Vietnamese", "dong"),
    ("Indonesia", "Jakarta", "Asia", "Indonesian", "rupiah"),
    ("Philippines", "Manila", "Asia", "Filipino", "peso"),
    ("Malaysia", "Kuala Lumpur", "Asia", "Malay", "ringgit"),
    ("Pakistan", "Islamabad", "Asia", "Urdu", "rupee"),
    ("Iran", "Tehran", "Asia", "Persian", "rial"),
    ("Saudi Arabia", "Riyadh", "Asia", "Arabic", "riyal"),
    ("Israel", "Jerusalem", "Asia", "Hebrew", "shekel"),
    ("Mongolia", "Ulaanbaatar", "Asia", "Mongolian", "tugrik"),
    ("Nepal", "Kathmandu", "Asia", "Nepali", "rupee"),
    ("Egypt", "Cairo", "Africa", "Arabic", "pound"),
    ("Nigeria", "Abuja", "Africa", "English", "naira"),
    ("Kenya", "Nairobi", "Africa", "Swahili", "shilling"),
    ("Ethiopia", "Addis Ababa", "Africa", "Amharic", "birr"),
    ("Morocco", "Rabat", "Africa", "Arabic", "dirham"),
    ("Ghana", "Accra", "Africa", "English", "cedi"),
    ("South Africa", "Pretoria", "Africa", "Zulu", "rand"),
    ("Senegal", "Dakar", "Africa", "French", "franc"),
    ("Tanzania", "Dodoma", "Africa", "Swahili", "shilling"),
    ("Canada", "Ottawa", "North America", "English", "dollar"),
    ("United States", "Washington", "North America", "English", "dollar"),
    ("Mexico", "Mexico City", "North America", "Spanish", "peso"),
    ("Cuba", "Havana", "North America", "Spanish", "peso"),
    ("Jamaica", "Kingston", "North America", "English", "dollar"),
    ("Brazil", "Brasilia", "South America", "Portuguese", "real"),
    ("Argentina", "Buenos Aires", "South America", "Spanish", "peso"),
    ("Chile", "Santiago", "South America", "Spanish", "peso"),
    ("Peru", "Lima", "South America", "Spanish", "sol"),
    ("Colombia", "Bogota", "South America", "Spanish", "peso"),
    ("Venezuela", "Caracas", "South America", "Spanish", "bolivar"),
    ("Uruguay", "Montevideo", "South America", "Spanish", "peso"),
    ("Australia", "Canberra", "Oceania", "English", "dollar"),
    ("New Zealand", "Wellington", "Oceania", "English", "dollar"),
    ("Fiji", "Suva", "Oceania", "English", "dollar"),
]

FIRST_NAMES = [
    "Anna", "Ben", "Clara", "David", "Elena", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Leo",
    "Maya", "Nils", "Olivia", "Pablo", "Quinn", "Rosa", "Samir", "Tara", "Umar", "Vera", "Wen", "Yara",
    "Zane", "Amara", "Bruno", "Chloe", "Dario", "Eva", "Farid", "Greta", "Hana", "Ivan", "Jade", "Kofi",
    "Lina", "Marco", "Nora", "Omar", "Priya", "Raul", "Sofia", "Theo", "Uma", "Victor", "Wanda", "Yusuf",
]
LAST_NAMES = [
    "Abbott", "Bergstrom", "Castillo", "Dubois", "Eriksen", "Fontaine", "Gallagher", "Hartmann", "Ibarra",
    "Jensen", "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quintero", "Rossi", "Sato",
    "Takahashi", "Urbina", "Vasquez", "Whitfield", "Yamada", "Zielinski", "Alvarez", "Brennan", "Costa",
    "Delgado", "Esposito", "Fischer", "Garcia", "Horvath", "Iverson", "Kaur", "Larsen", "Mendes", "Nakamura",
]
PROFESSIONS = [
    "teacher", "doctor", "engineer", "painter", "farmer", "baker", "pilot", "nurse", "architect", "chemist",
    "librarian", "carpenter", "journalist", "musician", "lawyer", "gardener", "astronomer", "chef", "tailor",
    "fisher", "geologist", "potter", "translator", "photographer",
]
HOBBIES = [
    "chess", "sailing", "birdwatching", "painting", "running", "gardening", "poetry", "cycling", "baking",
    "astronomy", "knitting", "climbing", "fishing", "photography", "the violin", "the piano", "swimming",
    "pottery", "hiking", "woodworking",
]


@dataclasses.dataclass(frozen=True)
class Country:
    name: str
    capital: str
    continent: str
    language: str
    currency: str


@dataclasses.dataclass(frozen=True)
class Person:
    name: str
    city: str          # birth city: one of the capitals
    country: str       # the country of that city
    year: int          # birth year
    profession: str
    hobby: str


@dataclasses.dataclass(frozen=True)
class World:
    countries: tuple[Country, ...]
    people: tuple[Person, ...]


def make_world(seed: int = 0, n_people: int = 400) -> World:
    """Countries (fixed, real) and ``n_people`` invented people with unique names."""
    rng = random.Random(seed)
    countries = tuple(Country(*c) for c in COUNTRIES)
    names = [f"{f} {l}" for f in FIRST_NAMES for l in LAST_NAMES]
    rng.shuffle(names)
    people = []
    for name in names[:n_people]:
        c = rng.choice(countries)
        people.append(Person(name, c.capital, c.name, rng.randint(1900, 2000), rng.choice(PROFESSIONS), rng.choice(HOBBIES)))
    return World(countries, tuple(people))
