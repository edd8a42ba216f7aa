"""The world's words: names, roles, nouns, colours, verbs, ... (a few hundred word types)."""

from __future__ import annotations

import random

NAMES_FEMALE = ("anna", "clara", "emma", "grace", "iris", "kate", "mia", "olivia", "rosa", "zoe")
NAMES_MALE = ("ben", "david", "frank", "henry", "jack", "leo", "noah", "peter", "sam", "tom")
NAMES = NAMES_FEMALE + NAMES_MALE
ROLES = (
    "teacher",
    "farmer",
    "doctor",
    "baker",
    "driver",
    "painter",
    "singer",
    "nurse",
    "fisherman",
    "neighbour",
    "cook",
    "gardener",
)


def plural_role(role: str) -> str:
    return role[:-3] + "men" if role.endswith("man") else role + "s"


RELATIVES_FEMALE = ("sister", "mother", "aunt", "grandmother")
RELATIVES_MALE = ("brother", "father", "uncle", "grandfather")
POSSESSIVES = ("my", "his", "her", "our", "their")

# noun -> plural
NOUNS = {
    "ball": "balls",
    "cup": "cups",
    "book": "books",
    "box": "boxes",
    "hat": "hats",
    "kite": "kites",
    "apple": "apples",
    "chair": "chairs",
    "lamp": "lamps",
    "bag": "bags",
    "bottle": "bottles",
    "key": "keys",
    "boat": "boats",
    "car": "cars",
    "bird": "birds",
    "flower": "flowers",
    "shoe": "shoes",
    "coat": "coats",
    "ring": "rings",
    "spoon": "spoons",
    "clock": "clocks",
    "drum": "drums",
    "egg": "eggs",
    "pencil": "pencils",
    "basket": "baskets",
    "ticket": "tickets",
    "candle": "candles",
    "blanket": "blankets",
    "plate": "plates",
    "letter": "letters",
}
COLOURS = ("red", "blue", "green", "yellow", "black", "white", "brown", "pink", "orange", "purple", "grey")
ADJECTIVES = ("big", "small", "old", "new", "little", "long", "short", "heavy", "soft", "clean")
OPPOSITES = {
    "big": "small",
    "small": "big",
    "old": "new",
    "new": "old",
    "long": "short",
    "short": "long",
    "heavy": "light",
    "soft": "hard",
    "clean": "dirty",
    "hot": "cold",
    "cold": "hot",
    "fast": "slow",
    "slow": "fast",
    "happy": "sad",
    "sad": "happy",
    "up": "down",
    "down": "up",
    "day": "night",
    "night": "day",
    "early": "late",
    "late": "early",
}
NUMBERS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
)
PLACES = (
    "kitchen",
    "garden",
    "park",
    "school",
    "market",
    "library",
    "station",
    "beach",
    "forest",
    "farm",
    "river",
    "shop",
    "village",
    "bakery",
    "hospital",
)
HOMES = ("village", "city", "town", "forest", "mountains", "valley", "north", "south")
LOCATION_PREPOSITIONS = ("in", "at", "near", "behind", "next to")
TIMES = (
    "today",
    "every morning",
    "in the evening",
    "after lunch",
    "on sunday",
    "on monday",
    "before dinner",
    "at night",
    "every day",
    "this afternoon",
)
PETS = ("cat", "dog", "rabbit", "parrot", "horse", "goat", "duck", "mouse")
JOBS = ("teacher", "farmer", "doctor", "baker", "driver", "painter", "singer", "nurse")
FRUITS = {"apple": "apples", "orange": "oranges", "pear": "pears", "plum": "plums", "lemon": "lemons"}
CATEGORIES = {
    "colour": ("red", "blue", "green", "yellow", "pink", "purple"),
    "animal": ("cat", "dog", "rabbit", "horse", "goat", "duck"),
    "place": ("kitchen", "garden", "park", "school", "market", "library"),
    "number": ("three", "seven", "nine", "twelve", "fifteen", "twenty"),
}

# transitive verbs: base, third person singular
TRANSITIVE = {
    "see": "sees",
    "find": "finds",
    "carry": "carries",
    "buy": "buys",
    "sell": "sells",
    "hold": "holds",
    "want": "wants",
    "like": "likes",
    "paint": "paints",
    "drop": "drops",
    "bring": "brings",
    "take": "takes",
    "make": "makes",
    "open": "opens",
    "wash": "washes",
    "throw": "throws",
    "catch": "catches",
    "need": "needs",
    "clean": "cleans",
    "count": "counts",
    "hide": "hides",
    "keep": "keeps",
    "fix": "fixes",
    "move": "moves",
}
# motion verbs taking "to <place>"
MOTION = {"walk": "walks", "run": "runs", "go": "goes", "drive": "drives", "ride": "rides", "hurry": "hurries"}
# intransitive verbs taking a location phrase
STATIVE = {"sleep": "sleeps", "sit": "sits", "play": "plays", "work": "works", "wait": "waits", "read": "reads", "sing": "sings"}


def word_inventory() -> set[str]:
    """Every word the grammar can produce (used to pick nonwords and to document the size)."""
    words: set[str] = set()
    for group in (
        NAMES,
        ROLES,
        RELATIVES_FEMALE,
        RELATIVES_MALE,
        POSSESSIVES,
        COLOURS,
        ADJECTIVES,
        NUMBERS,
        PLACES,
        HOMES,
        PETS,
        JOBS,
    ):
        words.update(group)
    for mapping in (NOUNS, TRANSITIVE, MOTION, STATIVE, FRUITS, OPPOSITES):
        words.update(mapping)
        words.update(mapping.values())
    words.update(plural_role(role) for role in ROLES)
    for phrase in TIMES + LOCATION_PREPOSITIONS:
        words.update(phrase.split())
    return words


# one of `items`; it lives here because every sampler of the world (grammar, facts, stories, pairs) imports the lexicon
def pick(rng: random.Random, items):
    return items[rng.randrange(len(items))]
