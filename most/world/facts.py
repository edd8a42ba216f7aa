"""The fact base (who lives where, owns what, ...), the sums QA asks, and the instructions."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from most.rng import rng_for
from most.world.lexicon import CATEGORIES, COLOURS, FRUITS, HOMES, JOBS, NAMES, NOUNS, NUMBERS, OPPOSITES, PETS, pick


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
        facts.append(Fact(person, "home", pick(rng, HOMES)))
        for noun in rng.sample(("ball", "kite", "hat", "bag", "boat", "coat", "car", "cup"), 3):
            facts.append(Fact(person, f"object_colour:{noun}", pick(rng, COLOURS)))
        facts.append(Fact(person, "pet", pick(rng, PETS)))
        facts.append(Fact(person, f"fruit_count:{pick(rng, tuple(FRUITS))}", NUMBERS[rng.randint(2, 12)]))
        facts.append(Fact(person, "favourite_colour", pick(rng, COLOURS)))
        facts.append(Fact(person, "job", pick(rng, JOBS)))
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


# instructions ask about the lexicon and, for "tell me about", the facts: so they live with the facts
def sample_instruction(rng: random.Random, sentence_source: Callable[[], str], facts: list[Fact]) -> tuple[str, str]:
    kind = rng.randrange(8)
    if kind == 0:
        sentence = sentence_source()
        return f"repeat after me {sentence}", sentence
    if kind == 1:
        n = rng.randint(0, 19)
        return pick(rng, (f"say the number after {NUMBERS[n]}", f"which number comes after {NUMBERS[n]}")), NUMBERS[n + 1]
    if kind == 2:
        n = rng.randint(1, 20)
        return f"say the number before {NUMBERS[n]}", NUMBERS[n - 1]
    if kind == 3:
        start = rng.randint(0, 15)
        stop = start + rng.randint(2, 4)
        return f"count from {NUMBERS[start]} to {NUMBERS[stop]}", " ".join(NUMBERS[start : stop + 1])
    if kind == 4:
        word = pick(rng, tuple(OPPOSITES))
        return pick(rng, (f"what is the opposite of {word}", f"tell me the opposite of {word}")), OPPOSITES[word]
    if kind == 5:
        noun = pick(rng, tuple(NOUNS))
        return f"what is the plural of {noun}", NOUNS[noun]
    if kind == 6:
        category = pick(rng, tuple(CATEGORIES))
        word = pick(rng, CATEGORIES[category])
        other = pick(rng, tuple(c for c in CATEGORIES if c != category))
        first, second = (category, other) if rng.random() < 0.5 else (other, category)
        return f"is {word} a {first} or a {second}", f"{word} is a {category}"
    person = pick(rng, NAMES)
    own = {f.relation: f.value for f in facts if f.person == person}
    return f"tell me about {person}", f"{person} lives in the {own['home']} and has a {own['pet']}"
