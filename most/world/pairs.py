"""sBLIMP-like grammatical/ungrammatical pairs and sWUGGY-like word/non-word pairs."""

from __future__ import annotations

import random
from collections.abc import Callable

from most.world.grammar import location, noun_phrase, optional, sample_subject
from most.world.lexicon import COLOURS, NOUNS, NUMBERS, TRANSITIVE, pick


def grammatical_pair(rng: random.Random) -> tuple[str, str, str]:
    """(grammatical, ungrammatical, phenomenon) built from a fresh grammatical sentence."""
    kind = rng.randrange(3)
    if kind == 0:  # subject-verb agreement
        subject = sample_subject(rng)
        verb = pick(rng, tuple(TRANSITIVE))
        obj, _, _ = noun_phrase(rng)
        right = TRANSITIVE[verb] if not subject.plural else verb
        wrong = verb if not subject.plural else TRANSITIVE[verb]
        tail = optional(rng, 0.4, lambda: location(rng))
        good = " ".join([subject.text, right, obj, *tail])
        bad = " ".join([subject.text, wrong, obj, *tail])
        return good, bad, "agreement"
    if kind == 1:  # determiner-noun number agreement
        noun = pick(rng, tuple(NOUNS))
        count = rng.randint(2, 12)
        colour = pick(rng, COLOURS)
        subject = sample_subject(rng, plural=False)
        verb = TRANSITIVE[pick(rng, tuple(TRANSITIVE))]
        good = f"{subject.text} {verb} {NUMBERS[count]} {colour} {NOUNS[noun]}"
        bad = f"{subject.text} {verb} {NUMBERS[count]} {colour} {noun}"
        return good, bad, "number"
    subject = sample_subject(rng, plural=False)  # word order
    verb = TRANSITIVE[pick(rng, tuple(TRANSITIVE))]
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
            candidate = pick(rng, _ONSETS) + rest
        else:
            vowel_end = vowel_at
            while vowel_end < len(word) and word[vowel_end] in "aeiou":
                vowel_end += 1
            candidate = onset + pick(rng, _VOWELS) + word[vowel_end:]
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
