"""Stage `eval_spoken_qa`: spoken questions answered in text (S->T) and in speech (S->S).

S->T: the spoken_qa prompt (question as units) -> a greedy text answer. S->S: that answer spoken by
the same model (its TTS task) -> the run's vocoder -> the judge ASR -> the transcript is the answer,
as a listener hears it. Scoring, both after the Whisper normaliser: an answer is correct if any gold
answer appears in it as whole words (containment, the Spectron/Moshi rule), and exactly correct if
it equals one (exact match, the official MoST script's rule). Bootstrap 95% CIs over questions.
Beside them, T->T: the same questions written (`text_qa` template), what the model knows without
the speech path; S->T far below T->T means the speech input, not the knowledge, limits the answers.
Both also per kind of question (the rows' `label`: facts and arithmetic in the embedded world).
S->S is judged by every judge (`judge.kind`, whose figures are the headline, and `judge.second`),
each with a chance accuracy beside it: its transcripts scored against the next question's answers.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from most.evaluate.spoken_qa import by_kind, scored
from most.evaluate.stats import chance_pairing
from most.io import atomic_directory, write_json, write_jsonl
from most.stages import StageResult

log = logging.getLogger(__name__)


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    import datasets
    import soundfile

    from most.data import manifest
    from most.evaluate.generate import Checkpoint
    from most.evaluate.tts import speak_and_judge
    from most.speech.feature_store import with_frames
    from most.speech.judge import make_judges
    from most.speech.speaker import Speaker
    from most.speech.units import UnitTokenizer

    settings, seed, started = cfg["evaluate"], cfg["seed"], time.time()
    test = datasets.load_from_disk(str(Path(inputs["tokens"]) / "test"))
    rows = [row for row in test if row["task"] == "spoken_qa"]
    unanswerable = [row["id"] for row in rows if not (row["answers"] or row["response"])]
    rows = with_frames(
        [row for row in rows if row["answers"] or row["response"]][: settings["qa_questions"]], Path(inputs["features"]), "test"
    )
    if len(rows) < 2:
        raise ValueError(f"eval_spoken_qa: {inputs['tokens']}/test has {len(rows)} spoken_qa questions with answers; at least 2 are needed")
    answers = [row["answers"] or [row["response"]] for row in rows]
    checkpoint = Checkpoint.load(Path(inputs["instruct"]), cfg["tasks"]["templates"], threads)
    text_answers = checkpoint.generate_text("spoken_qa", rows, settings["qa_max_new_tokens"])
    result = {"s2t": scored(text_answers, answers, seed), "unanswerable_skipped": len(unanswerable)}
    written = None
    if "text_qa" in cfg["tasks"]["templates"]:
        written = checkpoint.generate_text("text_qa", [{"text": row["text"]} for row in rows], settings["qa_max_new_tokens"])
        result["t2t"] = scored(written, answers, seed)
    result["by_kind"] = by_kind(rows, text_answers, written, answers, seed)
    log.info(
        "eval_spoken_qa S->T: accuracy %.3f (95%% CI %.3f-%.3f), exact %.3f over %d",
        result["s2t"]["accuracy"],
        *result["s2t"]["ci"],
        result["s2t"]["exact_match"],
        len(rows),
    )
    spoken_rows = rows[: settings["qa_speech_answers"]]
    spoken = None
    if len(spoken_rows) >= 2:
        speaker = Speaker(Path(inputs["vocoder"]), UnitTokenizer.load(Path(inputs["kmeans"])), cfg["voice"])
        judges = make_judges(cfg["judge"], manifest.training_texts(inputs["prepare"]), seed, threads)
        spoken = speak_and_judge(checkpoint, speaker, judges, text_answers[: len(spoken_rows)], settings, seed)
        gold = answers[: len(spoken_rows)]
        by_judge = {
            judge.kind: scored(spoken["transcripts"][judge.kind], gold, seed)
            | {
                "chance_accuracy": scored(spoken["transcripts"][judge.kind], chance_pairing(gold), seed)["accuracy"],
                "judge": judge.describe(),
            }
            for judge in judges
        }
        # the headline judge's figures; beside them the same questions in text (what the vocoder and the judge cost)
        result["s2s"] = by_judge[judges[0].kind] | {"judges": by_judge}
        result["s2s"]["s2t_accuracy_same_questions"] = sum(result["s2t"]["per_question"][: len(spoken_rows)]) / len(spoken_rows)
        for kind, figures in by_judge.items():
            log.info(
                "eval_spoken_qa S->S (%s judge): accuracy %.3f (95%% CI %.3f-%.3f; chance %.3f) over %d",
                kind,
                figures["accuracy"],
                *figures["ci"],
                figures["chance_accuracy"],
                len(spoken_rows),
            )
    result["seconds"] = round(time.time() - started, 1)
    with atomic_directory(outputs["eval_spoken_qa"]) as out:
        write_json(result, out / "metrics.json")
        transcripts = spoken["transcripts"] if spoken else {}
        write_jsonl(
            [
                {
                    "id": row["id"],
                    "question": row["text"],
                    "answers": gold,
                    "s2t": said,
                    "s2s": {kind: said[i] for kind, said in transcripts.items()} if i < len(spoken_rows) and transcripts else None,
                }
                for i, (row, gold, said) in enumerate(zip(rows, answers, text_answers))
            ],
            out / "answers.jsonl",
        )
        for row, wave in list(zip(spoken_rows, spoken["waves"] if spoken else []))[: settings["keep_wavs"]]:
            soundfile.write(out / f"{row['id']}.answer.wav", wave, 16000)
    metrics = {"s2t_accuracy": result["s2t"]["accuracy"], "s2t_exact_match": result["s2t"]["exact_match"]}
    metrics |= {f"{kind}.{path}_accuracy": values[path]["accuracy"] for kind, values in result["by_kind"].items() for path in values}
    if "s2s" in result:
        metrics |= {"s2s_accuracy": result["s2s"]["accuracy"], "s2s_exact_match": result["s2s"]["exact_match"]}
        metrics |= {f"{kind}.s2s_accuracy": figures["accuracy"] for kind, figures in result["s2s"]["judges"].items()}
    folder = Path(outputs["eval_spoken_qa"])
    return StageResult(metrics=metrics, artifacts=[folder / "metrics.json", folder / "answers.jsonl", *sorted(folder.glob("*.wav"))])
