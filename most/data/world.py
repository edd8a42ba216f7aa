"""The embedded story world: a small English grammar, its facts, stories and test pairs.

Everything here is plain text generated deterministically from a seed. `build_texts` returns
every text item of the embedded corpus (speech sentences, text-LM corpus, spoken-QA and
instruction pairs, audio-LM minimal pairs) already split so that no dev/test sentence appears in
any training text. Synthesis is done elsewhere (`most.data.synth`).

All text is lower case, words separated by single spaces, apostrophes only in possessives: the
alphabet the prepare stage checks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from most.data.leakage import held_out_found_in, word_ngrams
from most.data.sources import is_spoken
from most.rng import rng_for

# --------------------------------------------------------------------------------------------
# Lexicon (a few hundred word types)

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


# --------------------------------------------------------------------------------------------
# Deterministic randomness


def _pick(rng: random.Random, items):
    return items[rng.randrange(len(items))]


# --------------------------------------------------------------------------------------------
# Sentence grammar (present tense, subject-verb agreement)


@dataclass(frozen=True)
class Subject:
    text: str
    plural: bool
    pronoun: str  # he / she / they: used by stories


def sample_subject(rng: random.Random, plural: bool | None = None) -> Subject:
    if plural is None:
        plural = rng.random() < 0.3
    if plural:
        kind = rng.randrange(4)
        if kind == 0:
            first, second = rng.sample(NAMES, 2)
            return Subject(f"{first} and {second}", True, "they")
        if kind == 1:
            return Subject(f"the {plural_role(_pick(rng, ROLES))}", True, "they")
        if kind == 2:
            return Subject(_pick(rng, ("the children", "my friends", "the girls", "the boys", "our neighbours")), True, "they")
        return Subject(_pick(rng, ("we", "they")), True, "they")
    kind = rng.randrange(3)
    if kind == 0:
        name = _pick(rng, NAMES)
        return Subject(name, False, "she" if name in NAMES_FEMALE else "he")
    if kind == 1:
        return Subject(f"the {_pick(rng, ROLES)}", False, _pick(rng, ("he", "she")))
    female = rng.random() < 0.5
    relative = _pick(rng, RELATIVES_FEMALE if female else RELATIVES_MALE)
    return Subject(f"{_pick(rng, POSSESSIVES[:3])} {relative}", False, "she" if female else "he")


def noun_phrase(rng: random.Random, plural: bool | None = None, definite: bool | None = None) -> tuple[str, str, bool]:
    """A noun phrase with agreeing determiner/number. Returns (phrase, head noun, plural)."""
    noun = _pick(rng, tuple(NOUNS))
    if plural is None:
        plural = rng.random() < 0.45
    modifiers = []
    if rng.random() < 0.35:
        modifiers.append(_pick(rng, ADJECTIVES))
    if rng.random() < 0.6:
        modifiers.append(_pick(rng, COLOURS))
    head = NOUNS[noun] if plural else noun
    if plural:
        determiner = _pick(
            rng, ("the", "some", "two", "three", "four", "five", "six", "seven", "ten", "twelve", "my", "her", "his", "their")
        )
    elif definite is False:
        determiner = "an" if (modifiers[0] if modifiers else noun)[0] in "aeiou" else "a"
    else:
        determiner = _pick(rng, ("the", "a", "my", "his", "her", "this", "that", "our"))
        if determiner == "a" and (modifiers[0] if modifiers else noun)[0] in "aeiou":
            determiner = "an"
    return " ".join([determiner, *modifiers, head]), noun, plural


def _location(rng: random.Random) -> str:
    return f"{_pick(rng, LOCATION_PREPOSITIONS)} the {_pick(rng, PLACES)}"


def _optional(rng: random.Random, probability: float, make: Callable[[], str]) -> list[str]:
    return [make()] if rng.random() < probability else []


def sample_sentence(rng: random.Random) -> str:
    """One sentence of the grammar: statements and questions with agreement."""
    kind = rng.random()
    subject = sample_subject(rng)

    def verb_form(verbs: dict, base: str) -> str:
        return base if subject.plural else verbs[base]

    if kind < 0.38:
        verb = _pick(rng, tuple(TRANSITIVE))
        obj, _, _ = noun_phrase(rng)
        parts = [subject.text, verb_form(TRANSITIVE, verb), obj]
        parts += _optional(rng, 0.45, lambda: _location(rng))
        parts += _optional(rng, 0.3, lambda: _pick(rng, TIMES))
    elif kind < 0.52:
        verb = _pick(rng, tuple(MOTION))
        parts = [subject.text, verb_form(MOTION, verb), "to the", _pick(rng, PLACES)]
        parts += _optional(rng, 0.5, lambda: _pick(rng, TIMES))
    elif kind < 0.62:
        verb = _pick(rng, tuple(STATIVE))
        parts = [subject.text, verb_form(STATIVE, verb), _location(rng)]
        parts += _optional(rng, 0.4, lambda: _pick(rng, TIMES))
    elif kind < 0.72:
        obj, _, _ = noun_phrase(rng)
        recipient = _pick(rng, tuple(n for n in NAMES if n not in subject.text.split()))
        parts = [subject.text, "give" if subject.plural else "gives", obj, "to", recipient]
        parts += _optional(rng, 0.3, lambda: _pick(rng, TIMES))
    elif kind < 0.80:
        obj, _, plural = noun_phrase(rng, definite=False)
        if plural:
            obj, _, _ = noun_phrase(rng, plural=True)
        place = _location(rng)
        parts = ["there are" if plural else "there is", obj, place]
    elif kind < 0.87:
        obj, _, plural = noun_phrase(rng)
        quality = _pick(rng, COLOURS + ADJECTIVES)
        parts = [obj, "are" if plural else "is", quality]
    elif kind < 0.93:
        verb = _pick(rng, tuple(TRANSITIVE))
        obj, _, _ = noun_phrase(rng)
        liker = "like" if subject.plural else "likes"
        parts = [subject.text, liker, "to", verb, obj]
    else:
        verb = _pick(rng, tuple(TRANSITIVE))
        auxiliary = "do" if subject.plural else "does"
        noun = _pick(rng, tuple(NOUNS))
        if rng.random() < 0.5:
            parts = ["where", auxiliary, subject.text, verb, "the", _pick(rng, COLOURS), noun]
        else:
            parts = ["how many", NOUNS[noun], auxiliary, subject.text, verb]
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# The fact base: who lives where, owns what, ...


@dataclass(frozen=True)
class Fact:
    person: str
    relation: str  # a FACT_TEMPLATES key, with the object after a colon: object_colour:ball
    value: str

    def _fill(self, templates: tuple[str, ...]) -> tuple[str, ...]:
        kind, _, arg = self.relation.partition(":")
        plural = FRUITS.get(arg, "")
        return tuple(t.format(p=self.person, v=self.value, arg=arg, plural=plural) for t in templates)

    def statements(self) -> tuple[str, ...]:
        """Ways the training text states this fact."""
        return self._fill(FACT_TEMPLATES[self.relation.partition(":")[0]][0])

    def questions(self) -> tuple[tuple[str, ...], str]:
        """(the phrasings training asks this fact in, the phrasing held out for dev and test)."""
        phrasings = self._fill(FACT_TEMPLATES[self.relation.partition(":")[0]][1])
        return phrasings[:-1], phrasings[-1]

    def answers(self) -> list[str]:
        """Accepted answers: the first is the canonical response."""
        return list(self._fill(FACT_TEMPLATES[self.relation.partition(":")[0]][2]))


# relation -> (statements, question phrasings, accepted answers); {p} person, {v} value,
# {arg} the object of the relation, {plural} its plural. The last phrasing is never trained on: dev
# and test ask the facts that way, so a test question is answerable from what training shows (the
# fact, asked in other words) and still measures more than recall of a seen question.
FACT_TEMPLATES = {
    "home": (
        ("{p} lives in the {v}", "the home of {p} is in the {v}"),
        ("where does {p} live", "in which place does {p} live", "where is {p}'s home"),
        ("in the {v}", "the {v}", "{v}"),
    ),
    "object_colour": (
        ("{p}'s {arg} is {v}", "{p} has a {v} {arg}"),
        ("what colour is {p}'s {arg}", "which colour is the {arg} of {p}", "tell me the colour of {p}'s {arg}"),
        ("{v}",),
    ),
    "pet": (
        ("{p} has a {v}", "{p}'s pet is a {v}"),
        ("what pet does {p} have", "which animal does {p} keep as a pet", "what animal does {p} have as a pet"),
        ("a {v}", "{v}"),
    ),
    "fruit_count": (
        ("{p} has {v} {plural}", "there are {v} {plural} in {p}'s basket"),
        ("how many {plural} does {p} have", "how many {plural} are in {p}'s basket", "what number of {plural} does {p} have"),
        ("{v}",),
    ),
    "favourite_colour": (
        ("{p}'s favourite colour is {v}", "{p} likes the colour {v} best"),
        ("what is {p}'s favourite colour", "which colour does {p} like best", "which colour is {p}'s favourite"),
        ("{v}",),
    ),
    "job": (
        ("{p} is a {v}", "{p} works as a {v}"),
        ("what is {p}'s job", "what does {p} do for work", "what work does {p} do"),
        ("a {v}", "{v}"),
    ),
}
QA_KINDS = ("fact", "arithmetic")  # the `label` of a QA item: facts of the world, or sums


def build_facts(seed: int) -> list[Fact]:
    rng = rng_for(seed, "facts")
    facts = []
    for person in NAMES:
        facts.append(Fact(person, "home", _pick(rng, HOMES)))
        for noun in rng.sample(("ball", "kite", "hat", "bag", "boat", "coat", "car", "cup"), 3):
            facts.append(Fact(person, f"object_colour:{noun}", _pick(rng, COLOURS)))
        facts.append(Fact(person, "pet", _pick(rng, PETS)))
        facts.append(Fact(person, f"fruit_count:{_pick(rng, tuple(FRUITS))}", NUMBERS[rng.randint(2, 12)]))
        facts.append(Fact(person, "favourite_colour", _pick(rng, COLOURS)))
        facts.append(Fact(person, "job", _pick(rng, JOBS)))
    return facts


def arithmetic_items() -> list[tuple[str, list[str]]]:
    """Every addition and subtraction question over numbers up to twenty."""
    items = []
    for a in range(1, 11):
        for b in range(1, 11):
            items.append((f"what is {NUMBERS[a]} plus {NUMBERS[b]}", [NUMBERS[a + b]]))
    for a in range(2, 21):
        for b in range(1, min(a, 10) + 1):
            items.append((f"what is {NUMBERS[a]} minus {NUMBERS[b]}", [NUMBERS[a - b]]))
    return items


# --------------------------------------------------------------------------------------------
# Instructions


def sample_instruction(rng: random.Random, sentence_source: Callable[[], str], facts: list[Fact]) -> tuple[str, str]:
    kind = rng.randrange(8)
    if kind == 0:
        sentence = sentence_source()
        return f"repeat after me {sentence}", sentence
    if kind == 1:
        n = rng.randint(0, 19)
        return _pick(rng, (f"say the number after {NUMBERS[n]}", f"which number comes after {NUMBERS[n]}")), NUMBERS[n + 1]
    if kind == 2:
        n = rng.randint(1, 20)
        return f"say the number before {NUMBERS[n]}", NUMBERS[n - 1]
    if kind == 3:
        start = rng.randint(0, 15)
        stop = start + rng.randint(2, 4)
        return f"count from {NUMBERS[start]} to {NUMBERS[stop]}", " ".join(NUMBERS[start : stop + 1])
    if kind == 4:
        word = _pick(rng, tuple(OPPOSITES))
        return _pick(rng, (f"what is the opposite of {word}", f"tell me the opposite of {word}")), OPPOSITES[word]
    if kind == 5:
        noun = _pick(rng, tuple(NOUNS))
        return f"what is the plural of {noun}", NOUNS[noun]
    if kind == 6:
        category = _pick(rng, tuple(CATEGORIES))
        word = _pick(rng, CATEGORIES[category])
        other = _pick(rng, tuple(c for c in CATEGORIES if c != category))
        first, second = (category, other) if rng.random() < 0.5 else (other, category)
        return f"is {word} a {first} or a {second}", f"{word} is a {category}"
    person = _pick(rng, NAMES)
    own = {f.relation: f.value for f in facts if f.person == person}
    return f"tell me about {person}", f"{person} lives in the {own['home']} and has a {own['pet']}"


# --------------------------------------------------------------------------------------------
# Stories (text LM) and StoryCloze-like pairs


@dataclass(frozen=True)
class StorySchema:
    name: str
    body: tuple[tuple[str, ...], ...]  # alternatives per sentence; {p}=name {P}=pronoun {X}=possessive
    ending: tuple[str, ...]


STORY_SCHEMAS = (
    StorySchema(
        "hungry",
        (
            ("{p} was hungry", "{p} wanted something to eat"),
            ("{P} went to the {bakery}", "{P} walked to the {bakery}"),
            ("{P} bought some bread", "{P} paid for a loaf of bread"),
        ),
        ("{P} ate the bread", "{P} ate the warm bread"),
    ),
    StorySchema(
        "cold",
        (
            ("{p} was cold", "{p} felt cold in the wind"),
            ("{P} went back home", "{P} ran back to {X} house"),
            ("{P} found {X} {colour} coat", "{P} took {X} {colour} coat from the chair"),
        ),
        ("{P} put on the coat", "{P} put on the warm coat"),
    ),
    StorySchema(
        "tired",
        (
            ("{p} was very tired", "{p} had worked all day"),
            ("{P} went to {X} room", "{P} climbed the stairs to {X} room"),
            ("{P} lay down on the bed", "{P} turned off the lamp"),
        ),
        ("{P} fell asleep", "{P} slept until the morning"),
    ),
    StorySchema(
        "thirsty",
        (
            ("{p} was thirsty", "{p} wanted a drink"),
            ("{P} took a {colour} cup", "{P} found a clean cup in the kitchen"),
            ("{P} filled the cup with water", "{P} poured cold water into the cup"),
        ),
        ("{P} drank the water", "{P} drank all the water"),
    ),
    StorySchema(
        "dirty",
        (
            ("{p}'s hands were dirty", "{p} had played in the mud"),
            ("{P} went to the kitchen", "{P} walked to the sink"),
            ("{P} turned on the water", "{P} took the soap"),
        ),
        ("{P} washed {X} hands", "{P} washed {X} hands with soap"),
    ),
    StorySchema(
        "rain",
        (
            ("{p} was walking in the {park}", "{p} was at the {park}"),
            ("dark clouds came over the sky", "it started to rain"),
            ("{P} opened {X} {colour} umbrella", "{P} held {X} umbrella over {X} head"),
        ),
        ("{P} stayed dry", "{P} did not get wet"),
    ),
    StorySchema(
        "lost",
        (
            ("{p} lost {X} {colour} ball", "{p} could not find {X} {colour} ball"),
            ("{P} looked in the garden", "{P} searched the whole house"),
            ("at last {P} found it under the bed", "at last {P} saw it behind the door"),
        ),
        ("{P} was happy again", "{P} smiled and played with the ball"),
    ),
    StorySchema(
        "birthday",
        (
            ("it was {p}'s birthday", "{p} had a birthday party"),
            ("{X} friends came to the house", "many friends came to visit {p}"),
            ("they brought a big cake", "{X} mother made a big cake"),
        ),
        ("everyone sang a song for {p}", "they all sang happy birthday to {p}"),
    ),
    StorySchema(
        "market",
        (
            ("{p} needed some apples", "{p} wanted to buy apples"),
            ("{P} went to the market", "{P} walked to the farmer at the market"),
            ("{P} paid the farmer", "{P} gave the farmer some money"),
        ),
        ("{P} carried the apples home", "{P} took the apples home in a bag"),
    ),
    StorySchema(
        "gift",
        (
            ("{p} had a {colour} kite", "{p} owned a {colour} kite"),
            ("{P} gave the kite to {q}", "{P} wanted {q} to have the kite"),
            ("{q} said thank you", "{q} was very happy"),
        ),
        ("now {q} has a {colour} kite", "now the {colour} kite belongs to {q}"),
    ),
)


@dataclass(frozen=True)
class Story:
    schema: str
    sentences: tuple[str, ...]  # the body, without the ending
    ending: str
    wrong_ending: str  # the ending of another schema, told about the same person

    @property
    def text(self) -> str:
        return " ".join(self.sentences + (self.ending,))


def sample_story(rng: random.Random) -> Story:
    schema = _pick(rng, STORY_SCHEMAS)
    other = _pick(rng, tuple(s for s in STORY_SCHEMAS if s is not schema))
    name = _pick(rng, NAMES)
    female = name in NAMES_FEMALE
    fill = {
        "p": name,
        "P": "she" if female else "he",
        "X": "her" if female else "his",
        "q": _pick(rng, tuple(n for n in NAMES if n != name)),
        "colour": _pick(rng, COLOURS),
        "bakery": _pick(rng, ("bakery", "shop", "market")),
        "park": _pick(rng, ("park", "garden", "forest", "village")),
    }
    body = tuple(_pick(rng, alternatives).format(**fill) for alternatives in schema.body)
    ending = _pick(rng, schema.ending).format(**fill)
    wrong = _pick(rng, other.ending).format(**fill)
    if schema.name == "gift" and rng.random() < 0.5:
        # entity tracking: the gift's colour changed
        other_colour = _pick(rng, tuple(c for c in COLOURS if c != fill["colour"]))
        wrong = ending.replace(fill["colour"], other_colour)
    return Story(schema.name, body, ending, wrong)


# --------------------------------------------------------------------------------------------
# sBLIMP-like and sWUGGY-like pairs


def grammatical_pair(rng: random.Random) -> tuple[str, str, str]:
    """(grammatical, ungrammatical, phenomenon) built from a fresh grammatical sentence."""
    kind = rng.randrange(3)
    if kind == 0:  # subject-verb agreement
        subject = sample_subject(rng)
        verb = _pick(rng, tuple(TRANSITIVE))
        obj, _, _ = noun_phrase(rng)
        right = TRANSITIVE[verb] if not subject.plural else verb
        wrong = verb if not subject.plural else TRANSITIVE[verb]
        tail = _optional(rng, 0.4, lambda: _location(rng))
        good = " ".join([subject.text, right, obj, *tail])
        bad = " ".join([subject.text, wrong, obj, *tail])
        return good, bad, "agreement"
    if kind == 1:  # determiner-noun number agreement
        noun = _pick(rng, tuple(NOUNS))
        count = rng.randint(2, 12)
        colour = _pick(rng, COLOURS)
        subject = sample_subject(rng, plural=False)
        verb = TRANSITIVE[_pick(rng, tuple(TRANSITIVE))]
        good = f"{subject.text} {verb} {NUMBERS[count]} {colour} {NOUNS[noun]}"
        bad = f"{subject.text} {verb} {NUMBERS[count]} {colour} {noun}"
        return good, bad, "number"
    subject = sample_subject(rng, plural=False)  # word order
    verb = TRANSITIVE[_pick(rng, tuple(TRANSITIVE))]
    obj, _, _ = noun_phrase(rng)
    good = f"{subject.text} {verb} {obj}"
    bad = f"{subject.text} {obj} {verb}"
    return good, bad, "word_order"


_ONSETS = (
    "b",
    "bl",
    "br",
    "d",
    "dr",
    "f",
    "fl",
    "fr",
    "g",
    "gl",
    "gr",
    "k",
    "l",
    "m",
    "n",
    "p",
    "pl",
    "pr",
    "s",
    "sl",
    "sp",
    "st",
    "t",
    "tr",
    "v",
    "z",
)
_VOWELS = ("a", "e", "i", "o", "u", "ee", "oo", "ai")


def nonword_for(rng: random.Random, word: str, is_word: Callable[[str], bool]) -> str | None:
    """A pronounceable non-word that differs from `word` in its onset or first vowel."""
    vowel_at = next((i for i, ch in enumerate(word) if ch in "aeiou"), None)
    if vowel_at is None:
        return None
    onset, rest = word[:vowel_at], word[vowel_at:]
    for _ in range(40):
        if rng.random() < 0.6 or not onset:
            candidate = _pick(rng, _ONSETS) + rest
        else:
            vowel_end = vowel_at
            while vowel_end < len(word) and word[vowel_end] in "aeiou":
                vowel_end += 1
            candidate = onset + _pick(rng, _VOWELS) + word[vowel_end:]
        if candidate != word and not is_word(candidate):
            return candidate
    return None


def english_word_check() -> Callable[[str], bool]:
    """True for strings that are English words (wordfreq), so that non-words are really non-words."""
    try:
        from wordfreq import zipf_frequency
    except ImportError as error:  # pragma: no cover - wordfreq is a declared dependency
        raise RuntimeError("the embedded corpus needs the `wordfreq` package: pip install wordfreq") from error
    return lambda w: zipf_frequency(w, "en") > 0.0


# --------------------------------------------------------------------------------------------
# The corpus as text items


@dataclass
class TextItem:
    """One item of the embedded corpus. Spoken items get a voice when synthesized."""

    id: str
    split: str  # train | dev | test | test_neural
    task: str  # see TASKS
    text: str
    response: str = ""
    answers: list[str] = field(default_factory=list)
    pair_id: str = ""
    label: str = ""  # correct | wrong, for minimal pairs; fact | arithmetic, for QA items

    @property
    def spoken(self) -> bool:
        return is_spoken(self.task)


TASKS = {
    "asr": "a sentence of the grammar (ASR), spoken by the split's voices",
    "tts": "an ASR sentence again, spoken by the one output voice (TTS targets, the vocoder, the resynthesis ceiling)",
    "spoken_qa": "a spoken question; response/answers hold the gold answer(s)",
    "spoken_instruction": "a spoken instruction; response holds the answer",
    "swuggy": "a word or a pronounceable non-word (pair_id, label)",
    "sblimp": "a grammatical or ungrammatical sentence (pair_id, label)",
    "storycloze": "a story with its true or a wrong ending (pair_id, label)",
    "text_lm": "text-LM corpus: grammar sentences, stories and fact statements",
    "text_qa": "a written question with its answer",
    "text_instruction": "a written instruction with its response",
}


class _CorpusBuilder:
    """Collects items, numbers them per (task, split), and keeps held-out text out of training."""

    def __init__(self) -> None:
        self.items: list[TextItem] = []
        self.held_out: set[str] = set()  # dev/test texts (and wrong variants) that training must not contain
        self.texts: set[str] = set()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, split: str, task: str, text: str, item_id: str | None = None, **extra) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; the embedded corpus has {sorted(TASKS)}")
        if item_id is None:
            index = self._counts.get((task, split), 0)
            self._counts[(task, split)] = index + 1
            item_id = f"{task}-{split}-{index:05d}"
        self.items.append(TextItem(item_id, split, task, text, **extra))
        self.texts.add(text)
        if split != "train" and task != "swuggy":
            self.held_out.add(text)

    def allowed_in_training(self, text: str) -> bool:
        return not (word_ngrams(text) & self.held_out)

    def unique(self, rng: random.Random, make: Callable[[random.Random], str], count: int, what: str, training: bool) -> list[str]:
        """`count` distinct new texts; training texts also contain no held-out text."""
        out: list[str] = []
        fresh: set[str] = set()
        for _ in range(50 * count + 1000):
            if len(out) == count:
                return out
            text = make(rng)
            if text in self.texts or text in fresh or (training and not self.allowed_in_training(text)):
                continue
            fresh.add(text)
            out.append(text)
            if not training:
                self.held_out.add(text)
        if len(out) < count:
            raise ValueError(f"the grammar cannot produce {count} distinct {what}; lower the configured size")
        return out


def build_texts(sizes: dict, seed: int) -> list[TextItem]:
    """All text items of the embedded corpus, deterministically from `seed`.

    `sizes` is the `download.embedded.sizes` config section. Held-out material (dev, test,
    test_neural) is drawn first; training material is drawn so that it contains none of it, and
    `check_no_leakage` verifies the result.
    """
    corpus = _CorpusBuilder()

    # held-out ASR/TTS sentences
    rng = rng_for(seed, "sentences")
    for split, key in (("dev", "dev_sentences"), ("test", "test_sentences"), ("test_neural", "test_neural_sentences")):
        for text in corpus.unique(rng, sample_sentence, sizes[key], "sentences", training=False):
            corpus.add(split, "asr", text)

    # sBLIMP-like pairs: the grammatical member is a held-out sentence as well
    rng = rng_for(seed, "sblimp")
    index = 0
    while index < sizes["sblimp_pairs"]:
        good, bad, phenomenon = grammatical_pair(rng)
        if good in corpus.texts or bad in corpus.texts:
            continue
        pair_id = f"sblimp-{phenomenon}-{index:04d}"
        corpus.add("test", "sblimp", good, f"{pair_id}-correct", pair_id=pair_id, label="correct")
        corpus.add("test", "sblimp", bad, f"{pair_id}-wrong", pair_id=pair_id, label="wrong")
        index += 1

    # StoryCloze-like pairs: held-out whole stories with their true and a wrong ending
    rng = rng_for(seed, "stories")
    test_stories: dict[str, Story] = {}
    while len(test_stories) < sizes["storycloze_pairs"]:
        story = sample_story(rng)
        test_stories.setdefault(story.text, story)
    for index, story in enumerate(test_stories.values()):
        pair_id = f"storycloze-{story.schema}-{index:04d}"
        body = " ".join(story.sentences)
        corpus.add("test", "storycloze", f"{body} {story.ending}", f"{pair_id}-correct", pair_id=pair_id, label="correct")
        corpus.add("test", "storycloze", f"{body} {story.wrong_ending}", f"{pair_id}-wrong", pair_id=pair_id, label="wrong")

    # sWUGGY-like pairs: words of the grammar vs pronounceable non-words
    rng = rng_for(seed, "swuggy")
    is_word = english_word_check()
    vocabulary = sorted(w for w in word_inventory() if len(w) >= 3 and w.isalpha())
    rng.shuffle(vocabulary)
    made = 0
    for word in vocabulary:
        if made == sizes["swuggy_pairs"]:
            break
        nonword = nonword_for(rng, word, is_word)
        if nonword is None:
            continue
        pair_id = f"swuggy-{made:04d}"
        corpus.add("test", "swuggy", word, f"{pair_id}-correct", pair_id=pair_id, label="correct")
        corpus.add("test", "swuggy", nonword, f"{pair_id}-wrong", pair_id=pair_id, label="wrong")
        made += 1
    if made < sizes["swuggy_pairs"]:
        raise ValueError(f"only {made} word/non-word pairs exist; lower download.embedded.sizes.swuggy_pairs")

    # QA: half facts, half sums in dev and test. Training asks every fact in its training
    # phrasings; dev/test ask some facts in the held-out phrasing. Sums are split by question.
    facts = build_facts(seed)
    rng = rng_for(seed, "qa")
    sums = arithmetic_items()
    rng.shuffle(sums)
    held_out_facts = list(facts)
    rng.shuffle(held_out_facts)
    n_dev, n_test = sizes["qa_dev"], sizes["qa_test"]
    fact_counts = {"dev": n_dev // 2, "test": n_test // 2}
    sum_counts = {split: count - fact_counts[split] for split, count in (("dev", n_dev), ("test", n_test))}
    if fact_counts["dev"] + fact_counts["test"] > len(facts) or sum_counts["dev"] + sum_counts["test"] >= len(sums):
        raise ValueError(f"qa_dev + qa_test: the world has {len(facts)} facts and {len(sums)} sums to ask; half of each set is facts")
    qa_splits: dict[str, list[tuple[str, list[str], str]]] = {}
    for split in ("dev", "test"):
        asked = [(f.questions()[1], f.answers(), "fact") for f in held_out_facts[: fact_counts[split]]]
        asked += [(q, a, "arithmetic") for q, a in sums[: sum_counts[split]]]
        held_out_facts, sums = held_out_facts[fact_counts[split] :], sums[sum_counts[split] :]
        rng.shuffle(asked)
        qa_splits[split] = asked
    qa_splits["train"] = [(q, f.answers(), "fact") for f in facts for q in f.questions()[0]] + [(q, a, "arithmetic") for q, a in sums]
    rng.shuffle(qa_splits["train"])
    for split, asked in qa_splits.items():
        for question, answers, kind in asked:
            corpus.add(split, "spoken_qa", question, response=answers[0], answers=list(answers), label=kind)
    for question, answers, kind in qa_splits["train"]:
        corpus.add("train", "text_qa", question, response=answers[0], answers=list(answers), label=kind)

    # held-out instructions (the sentences they quote are held out too)
    rng = rng_for(seed, "instructions")
    instruction_texts: set[str] = set()

    def instructions(count: int, training: bool) -> list[tuple[str, str]]:
        def quote() -> str:
            return corpus.unique(rng, sample_sentence, 1, "sentences", training=training)[0]

        out = []
        for _ in range(100 * count + 1000):
            if len(out) == count:
                break
            text, response = sample_instruction(rng, quote, facts)
            if text in instruction_texts or (training and not corpus.allowed_in_training(text)):
                continue
            instruction_texts.add(text)
            out.append((text, response))
        if len(out) < count:
            raise ValueError(f"cannot produce {count} distinct instructions; lower the configured size")
        return out

    for split, key in (("dev", "instruction_dev"), ("test", "instruction_test")):
        for text, response in instructions(sizes[key], training=False):
            corpus.add(split, "spoken_instruction", text, response=response)

    # training material: none of it contains a held-out text
    rng = rng_for(seed, "train-sentences")
    for text in corpus.unique(rng, sample_sentence, sizes["train_sentences"], "sentences", training=True):
        corpus.add("train", "asr", text)
    for text in corpus.unique(rng, sample_sentence, sizes["lm_sentences"], "sentences", training=True):
        corpus.add("train", "text_lm", text)
    for text, response in instructions(sizes["instruction_train"], training=True):
        corpus.add("train", "spoken_instruction", text, response=response)
    for text, response in instructions(sizes["text_instruction_train"], training=True):
        corpus.add("train", "text_instruction", text, response=response)

    rng = rng_for(seed, "train-stories")
    for text in corpus.unique(rng, lambda r: sample_story(r).text, sizes["lm_stories"], "stories", training=True):
        corpus.add("train", "text_lm", text)
    for fact in facts:
        for statement in fact.statements():
            corpus.add("train", "text_lm", statement)

    # the output voice speaks the first sentences of each split again: the speech the model learns to
    # produce (one voice, as the paper's single-speaker vocoder) and the vocoder learns to render
    for split in ("train", "dev", "test"):
        sentences = [item.text for item in corpus.items if item.task == "asr" and item.split == split]
        for text in sentences[: sizes[f"tts_{split}_sentences"]]:
            corpus.add(split, "tts", text)

    check_no_leakage(corpus.items)
    return corpus.items


def check_no_leakage(items: list[TextItem]) -> None:
    """Raise if any dev/test text occurs, as a run of whole words, inside any training text.

    Training text is every train item's text and response. sWUGGY-like items are single words of
    the vocabulary by design (they test lexical knowledge), so they are exempt.
    """
    held_out: dict[str, str] = {}
    for item in items:
        if item.split != "train" and item.task != "swuggy":
            held_out.setdefault(item.text, item.id)  # a text's first item (the output voice repeats some)
    training = [text for item in items if item.split == "train" for text in (item.text, item.response) if text]
    found = held_out_found_in(training, held_out)
    if found:
        raise ValueError(f"{len(found)} held-out texts occur in training text, e.g. {[held_out[t] for t in sorted(found)[:5]]}")
