"""Audio-LM pair scoring (sWUGGY, sBLIMP, StoryCloze style), as in ZeroSpeech 2021: a pair
scores 1 if the correct utterance is likelier, 0.5 on a tie, else 0; with several voices per pair,
the voices' scores are averaged first. Chance is 0.5. Used by `eval_audio_lm`
(`most.stages.eval_audio_lm`) and the ablations.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from most.data.sources import PAIR_TASKS
from most.evaluate.stats import bootstrap_ratio

log = logging.getLogger(__name__)
KINDS = PAIR_TASKS
LABELS = ("correct", "wrong")


def pair_scores(items: list[dict]) -> dict[str, float]:
    """pair id -> pair score from items `{pair_id, label, score, speaker}`: 1 / 0.5 / 0 per voice,
    averaged over the voices that spoke both sides. Pairs missing a side are left out."""
    by_voice: dict[tuple, dict[str, float]] = defaultdict(dict)
    for item in items:
        if item["label"] not in LABELS:
            raise ValueError(f"pair {item['pair_id']}: label {item['label']!r} is not one of {LABELS}")
        by_voice[(item["pair_id"], item.get("speaker", ""))][item["label"]] = item["score"]
    per_pair: dict[str, list[float]] = defaultdict(list)
    for (pair_id, _), sides in by_voice.items():
        if len(sides) == 2:
            per_pair[pair_id].append(1.0 if sides["correct"] > sides["wrong"] else 0.5 if sides["correct"] == sides["wrong"] else 0.0)
    return {pair_id: sum(values) / len(values) for pair_id, values in sorted(per_pair.items())}


def pair_items(rows: list[dict], likelihoods: list[tuple[float, int]], score: str) -> list[dict]:
    """`pair_scores` items from rows and their (summed log-likelihood, token count): `score` is
    `mean` (per token) or `sum`."""
    return [
        {"pair_id": r["pair_id"], "label": r["label"], "speaker": r["speaker"], "score": total / count if score == "mean" else total}
        for r, (total, count) in zip(rows, likelihoods)
    ]


def accuracy(scores: dict[str, float], seed: int) -> dict:
    values = list(scores.values())
    return {"accuracy": sum(values) / len(values), "ci": bootstrap_ratio(values, [1] * len(values), seed), "pairs": len(values)}
