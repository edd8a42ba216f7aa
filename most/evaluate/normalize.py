"""English text normalisation applied to references and hypotheses alike before WER.

In the spirit of Whisper's English normaliser: lower case, punctuation removed, spelled-out
cardinal numbers written as digits (a judge may print "7" for "seven"), British spellings made
American (the judge writes "color" for "colour"), whitespace collapsed.
"""

from __future__ import annotations

import re
import unicodedata

_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
BRITISH_TO_AMERICAN = {
    "colour": "color",
    "colours": "colors",
    "favourite": "favorite",
    "favourites": "favorites",
    "grey": "gray",
    "neighbour": "neighbor",
    "neighbours": "neighbors",
    "centre": "center",
    "centres": "centers",
    "theatre": "theater",
    "metre": "meter",
    "metres": "meters",
    "organise": "organize",
    "realise": "realize",
    "travelled": "traveled",
    "behaviour": "behavior",
    "honour": "honor",
    "labour": "labor",
    "flavour": "flavor",
    "harbour": "harbor",
}
_CONTRACTIONS = {"won't": "will not", "can't": "can not", "n't": " not", "'re": " are", "'ll": " will", "'ve": " have", "'m": " am"}


def _numbers_to_digits(words: list[str]) -> list[str]:
    out: list[str] = []
    total, current, in_number = 0, 0, False

    def flush():
        nonlocal total, current, in_number
        if in_number:
            out.append(str(total + current))
        total, current, in_number = 0, 0, False

    for index, word in enumerate(words):
        if word in _UNITS:
            value = _UNITS[word]
            if in_number and current > 0 and current % 100 == 0:
                current += value  # one hundred five
            elif in_number and current % 100 >= 20 and current % 10 == 0 and value < 10:
                current += value  # twenty one
            elif in_number and current == 0 and total:
                current = value  # one thousand five
            else:
                flush()
                current, in_number = value, True
        elif word in _TENS:
            if in_number and current % 100 == 0 and (current or total):
                current += _TENS[word]  # one hundred twenty
            else:
                flush()
                current, in_number = _TENS[word], True
        elif word in _SCALES and in_number:
            if _SCALES[word] == 100:
                current = max(current, 1) * 100
            else:
                total += max(current, 1) * _SCALES[word]
                current = 0
        elif (
            word == "and"
            and in_number
            and (total or current >= 100)
            and index + 1 < len(words)
            and (words[index + 1] in _UNITS or words[index + 1] in _TENS)
        ):
            continue  # one hundred and five
        else:
            flush()
            out.append(word)
    flush()
    return out


def _american(word: str) -> str:
    if word.endswith("'s"):
        return BRITISH_TO_AMERICAN.get(word[:-2], word[:-2]) + "'s"
    return BRITISH_TO_AMERICAN.get(word, word)


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = re.sub(r"[\[(<{].*?[\])>}]", " ", text)  # bracketed annotations
    for short, long in _CONTRACTIONS.items():
        text = text.replace(short, long)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    text = "".join(ch if ch.isalnum() or ch in " '" else " " for ch in text)
    words = [w.strip("'") for w in text.split()]
    words = [_american(w) for w in words if w]
    return " ".join(_numbers_to_digits(words))


def word_error_rate(references: list[str], hypotheses: list[str]) -> dict:
    """Corpus-level WER (and its parts) after normalising both sides; `errors` and `lengths` hold each
    scored utterance's word errors and reference words (for bootstrap intervals)."""
    import jiwer

    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    pairs = [(r, h) for r, h in zip(refs, hyps) if r]
    if not pairs:
        raise ValueError("no non-empty reference to score")
    measures = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
    words = measures.hits + measures.substitutions + measures.deletions
    return {
        "wer": measures.wer,
        "words": words,
        "substitutions": measures.substitutions,
        "deletions": measures.deletions,
        "insertions": measures.insertions,
        "utterances": len(pairs),
        "errors": [sum(_chunk_errors(chunk) for chunk in sentence) for sentence in measures.alignments],
        "lengths": [len(r.split()) for r, _ in pairs],
    }


def _chunk_errors(chunk) -> int:
    if chunk.type == "insert":
        return chunk.hyp_end_idx - chunk.hyp_start_idx
    return 0 if chunk.type == "equal" else chunk.ref_end_idx - chunk.ref_start_idx
