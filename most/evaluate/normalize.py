"""English text normalisation and error rates: one place for every WER/CER in the package.

The normaliser is Whisper's English text normaliser (the `whisper-normalizer` port, pinned in
pyproject.toml; its output equals transformers' `EnglishTextNormalizer` with Whisper's spelling map):
lower case; text in brackets and parentheses dropped; fillers (uh, um, hmm) dropped; contractions
expanded; spelled-out numbers written as digits; British spellings made American; symbols and
diacritics removed; whitespace collapsed. References and hypotheses both go through it.

WER is corpus-level (word errors summed over utterances / reference words summed), as jiwer's
`process_words` computes it; the utterance mean is reported beside it. An utterance whose
normalised reference is empty has no defined WER of its own: its hypothesis words all count as
insertions in the corpus figure, and it is left out of the utterance mean (and counted).
"""

from __future__ import annotations

from functools import lru_cache

from most.evaluate.stats import chance_pairing, paired_bootstrap_difference


@lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    return _normalizer()(text or "")


def word_error_rate(references: list[str], hypotheses: list[str]) -> dict:
    """Corpus WER after normalising both sides, its parts, the utterance mean, and each utterance's
    `errors` and `lengths` (reference words) for bootstrap intervals."""
    return _error_rate(references, hypotheses, str.split, "words")


def chance_word_error_rate(references: list[str], hypotheses: list[str], scored: dict, seed: int) -> dict:
    """The chance baseline of `scored` (`word_error_rate(references, hypotheses)`): the same
    hypotheses against the next utterance's reference, and a paired interval of chance minus WER
    (above 0: the hypotheses depend on their own utterance)."""
    chance = word_error_rate(chance_pairing(references), hypotheses)
    difference = paired_bootstrap_difference((chance["errors"], chance["lengths"]), (scored["errors"], scored["lengths"]), seed)
    return {"wer_chance": chance["wer"], "chance_minus_wer_ci": difference}


def character_error_rate(references: list[str], hypotheses: list[str]) -> dict:
    """Corpus CER after normalising both sides (spaces count as characters, as in jiwer)."""
    return _error_rate(references, hypotheses, list, "characters")


def _error_rate(references: list[str], hypotheses: list[str], split, unit: str) -> dict:
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [split(normalize(r)) for r in references]
    hyps = [split(normalize(h)) for h in hypotheses]
    if not any(refs):
        raise ValueError("no non-empty reference to score")
    scored = [i for i, ref in enumerate(refs) if ref]
    measures = jiwer.process_words([" ".join(map(_token, refs[i])) for i in scored], [" ".join(map(_token, hyps[i])) for i in scored])
    errors, lengths = [len(h) for h in hyps], [0] * len(refs)  # empty reference: every hypothesis token is inserted
    for i, alignment in zip(scored, measures.alignments):
        errors[i], lengths[i] = sum(_chunk_errors(chunk) for chunk in alignment), len(refs[i])
    total = sum(lengths)
    return {
        "wer" if unit == "words" else "cer": sum(errors) / total,
        unit: total,
        "substitutions": measures.substitutions,
        "deletions": measures.deletions,
        "insertions": measures.insertions + sum(errors[i] for i, ref in enumerate(refs) if not ref),
        "utterances": len(refs),
        "empty_references": len(refs) - len(scored),
        "utterance_mean": sum(errors[i] / lengths[i] for i in scored) / len(scored),
        "errors": errors,
        "lengths": lengths,
    }


def _token(piece: str) -> str:
    # characters as jiwer words: a space becomes a visible token so it is aligned like any other
    return "▁" if piece == " " else piece


def _chunk_errors(chunk) -> int:
    if chunk.type == "insert":
        return chunk.hyp_end_idx - chunk.hyp_start_idx
    return 0 if chunk.type == "equal" else chunk.ref_end_idx - chunk.ref_start_idx
