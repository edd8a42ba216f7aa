"""Sentence grammar: present-tense statements and questions with subject-verb agreement."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from most.world.lexicon import (
    ADJECTIVES,
    COLOURS,
    LOCATION_PREPOSITIONS,
    MOTION,
    NAMES,
    NAMES_FEMALE,
    NOUNS,
    PLACES,
    POSSESSIVES,
    RELATIVES_FEMALE,
    RELATIVES_MALE,
    ROLES,
    STATIVE,
    TIMES,
    TRANSITIVE,
    pick,
    plural_role,
)


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
            return Subject(f"the {plural_role(pick(rng, ROLES))}", True, "they")
        if kind == 2:
            return Subject(pick(rng, ("the children", "my friends", "the girls", "the boys", "our neighbours")), True, "they")
        return Subject(pick(rng, ("we", "they")), True, "they")
    kind = rng.randrange(3)
    if kind == 0:
        name = pick(rng, NAMES)
        return Subject(name, False, "she" if name in NAMES_FEMALE else "he")
    if kind == 1:
        return Subject(f"the {pick(rng, ROLES)}", False, pick(rng, ("he", "she")))
    female = rng.random() < 0.5
    relative = pick(rng, RELATIVES_FEMALE if female else RELATIVES_MALE)
    return Subject(f"{pick(rng, POSSESSIVES[:3])} {relative}", False, "she" if female else "he")


def noun_phrase(rng: random.Random, plural: bool | None = None, definite: bool | None = None) -> tuple[str, str, bool]:
    """A noun phrase with agreeing determiner/number. Returns (phrase, head noun, plural)."""
    noun = pick(rng, tuple(NOUNS))
    if plural is None:
        plural = rng.random() < 0.45
    modifiers = []
    if rng.random() < 0.35:
        modifiers.append(pick(rng, ADJECTIVES))
    if rng.random() < 0.6:
        modifiers.append(pick(rng, COLOURS))
    head = NOUNS[noun] if plural else noun
    if plural:
        determiner = pick(
            rng, ("the", "some", "two", "three", "four", "five", "six", "seven", "ten", "twelve", "my", "her", "his", "their")
        )
    elif definite is False:
        determiner = "an" if (modifiers[0] if modifiers else noun)[0] in "aeiou" else "a"
    else:
        determiner = pick(rng, ("the", "a", "my", "his", "her", "this", "that", "our"))
        if determiner == "a" and (modifiers[0] if modifiers else noun)[0] in "aeiou":
            determiner = "an"
    return " ".join([determiner, *modifiers, head]), noun, plural


def location(rng: random.Random) -> str:
    return f"{pick(rng, LOCATION_PREPOSITIONS)} the {pick(rng, PLACES)}"


def optional(rng: random.Random, probability: float, make: Callable[[], str]) -> list[str]:
    return [make()] if rng.random() < probability else []


def sample_sentence(rng: random.Random) -> str:
    """One sentence of the grammar: statements and questions with agreement."""
    kind = rng.random()
    subject = sample_subject(rng)

    def verb_form(verbs: dict, base: str) -> str:
        return base if subject.plural else verbs[base]

    if kind < 0.38:
        verb = pick(rng, tuple(TRANSITIVE))
        obj, _, _ = noun_phrase(rng)
        parts = [subject.text, verb_form(TRANSITIVE, verb), obj]
        parts += optional(rng, 0.45, lambda: location(rng))
        parts += optional(rng, 0.3, lambda: pick(rng, TIMES))
    elif kind < 0.52:
        verb = pick(rng, tuple(MOTION))
        parts = [subject.text, verb_form(MOTION, verb), "to the", pick(rng, PLACES)]
        parts += optional(rng, 0.5, lambda: pick(rng, TIMES))
    elif kind < 0.62:
        verb = pick(rng, tuple(STATIVE))
        parts = [subject.text, verb_form(STATIVE, verb), location(rng)]
        parts += optional(rng, 0.4, lambda: pick(rng, TIMES))
    elif kind < 0.72:
        obj, _, _ = noun_phrase(rng)
        recipient = pick(rng, tuple(n for n in NAMES if n not in subject.text.split()))
        parts = [subject.text, "give" if subject.plural else "gives", obj, "to", recipient]
        parts += optional(rng, 0.3, lambda: pick(rng, TIMES))
    elif kind < 0.80:
        obj, _, plural = noun_phrase(rng, definite=False)
        if plural:
            obj, _, _ = noun_phrase(rng, plural=True)
        place = location(rng)
        parts = ["there are" if plural else "there is", obj, place]
    elif kind < 0.87:
        obj, _, plural = noun_phrase(rng)
        quality = pick(rng, COLOURS + ADJECTIVES)
        parts = [obj, "are" if plural else "is", quality]
    elif kind < 0.93:
        verb = pick(rng, tuple(TRANSITIVE))
        obj, _, _ = noun_phrase(rng)
        liker = "like" if subject.plural else "likes"
        parts = [subject.text, liker, "to", verb, obj]
    else:
        verb = pick(rng, tuple(TRANSITIVE))
        auxiliary = "do" if subject.plural else "does"
        noun = pick(rng, tuple(NOUNS))
        if rng.random() < 0.5:
            parts = ["where", auxiliary, subject.text, verb, "the", pick(rng, COLOURS), noun]
        else:
            parts = ["how many", NOUNS[noun], auxiliary, subject.text, verb]
    return " ".join(parts)
