"""Spoken-QA scoring, after the Whisper normaliser: an answer is correct if any gold answer
appears in it as whole words (containment, the Spectron/Moshi rule), and exactly correct if it
equals one (exact match, the official MoST script's rule); bootstrap 95% CIs over questions, overall
and per kind of question. Used by `eval_spoken_qa` (`most.stages.eval_spoken_qa`).
"""

from __future__ import annotations

import logging

from most.evaluate.normalize import normalize
from most.evaluate.stats import bootstrap_ratio

log = logging.getLogger(__name__)


def contains_answer(response: str, answers: list[str]) -> bool:
    """Any normalised gold answer occurs in the normalised response as a run of whole words."""
    said = f" {normalize(response)} "
    return any(gold.strip() and f" {gold} " in said for gold in map(normalize, answers))


def exact_match(response: str, answers: list[str]) -> bool:
    said = normalize(response)
    return bool(said) and any(said == normalize(gold) for gold in answers)


def scored(responses: list[str], answers: list[list[str]], seed: int) -> dict:
    contained = [float(contains_answer(r, a)) for r, a in zip(responses, answers)]
    exact = [float(exact_match(r, a)) for r, a in zip(responses, answers)]
    ones = [1] * len(responses)
    return {
        "accuracy": sum(contained) / len(contained),
        "ci": bootstrap_ratio(contained, ones, seed),
        "exact_match": sum(exact) / len(exact),
        "exact_match_ci": bootstrap_ratio(exact, ones, seed),
        "questions": len(responses),
        "per_question": contained,
    }


def by_kind(rows: list[dict], spoken: list[str], written: list[str] | None, answers: list[list[str]], seed: int) -> dict:
    """S->T and T->T per kind of question (the rows' `label`, e.g. `fact` / `arithmetic` in the
    embedded world; unlabelled rows are `all`): what the speech path costs on each."""
    kinds: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        kinds.setdefault(row.get("label") or "all", []).append(index)
    out = {}
    for kind, chosen in sorted(kinds.items()):
        pick = [answers[i] for i in chosen]
        out[kind] = {"s2t": scored([spoken[i] for i in chosen], pick, seed)}
        if written is not None:
            out[kind]["t2t"] = scored([written[i] for i in chosen], pick, seed)
    return out
