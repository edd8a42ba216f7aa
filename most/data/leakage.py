"""Held-out text inside training text: the one check used by corpus generation and by `prepare`."""

from __future__ import annotations

from collections.abc import Iterable


def word_ngrams(text: str) -> set[str]:
    """Every run of whole words in `text`."""
    words = text.split()
    return {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}


def held_out_found_in(training_texts: Iterable[str], held_out: Iterable[str], mode: str = "ngram") -> set[str]:
    """The held-out texts that occur in training text: as a run of whole words inside any training
    text (`ngram`), or as a whole training text (`exact`)."""
    held_out = set(held_out)
    if mode == "exact":
        return held_out & set(training_texts)
    if mode != "ngram":
        raise ValueError(f"unknown leakage check mode {mode!r}")
    found: set[str] = set()
    for text in training_texts:
        found |= word_ngrams(text) & held_out
    return found
