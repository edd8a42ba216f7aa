"""The embedded world: a small English grammar, its facts, stories and test pairs, as plain text.

Everything is generated deterministically from a seed; synthesis is done elsewhere
(`most.data.synth`). All text is lower case, words separated by single spaces, apostrophes only in
possessives: the alphabet the prepare stage checks.

- `lexicon`: the words (names, roles, nouns, colours, verbs, ...) and `pick`, how every sampler draws
- `grammar`: sentences with subject-verb agreement
- `facts`: the fact base, the sums and the instructions that QA and instruction items ask
- `stories`: stories and their StoryCloze-like wrong endings
- `pairs`: sBLIMP-like and sWUGGY-like minimal pairs
- `corpus`: `build_texts`, every text item of the embedded corpus, split without leakage
"""

from most.world.corpus import TextItem, build_texts

__all__ = ["TextItem", "build_texts"]
