"""The report's content: every evaluation's headline with its 95% CI (`headline`), as markdown
(`markdown`) and plot bars; written by the `report` stage (`most.stages.report`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from most.speech.judge import describe_briefly

log = logging.getLogger(__name__)


def _metric(value: float, n: int, ci) -> dict:
    return {"value": value, "n": n, "ci_low": ci[0], "ci_high": ci[1]}


def read_stage_json(folder, name: str = "metrics.json") -> dict:
    return json.loads((Path(folder) / name).read_text())


def headline(inputs: dict) -> dict:
    """The report's metrics from the evaluation outputs."""
    asr, tts, audio_lm, qa = (read_stage_json(inputs[name]) for name in ("eval_asr", "eval_tts", "eval_audio_lm", "eval_spoken_qa"))
    primary = asr["sets"][asr["primary"]]
    average = audio_lm["average"]
    return {
        "asr": {
            "wer": _metric(primary["wer"], primary["utterances"], primary["wer_ci"]),
            "utterance_mean_wer": _metric(primary["utterance_mean_wer"], primary["utterances"], primary["utterance_mean_wer_ci"]),
            "chance_wer": primary["wer_chance"],
            "set": asr["primary"],
            "sets": {
                name: (
                    {"skipped": values["skipped"]}
                    if "skipped" in values
                    else {"wer": _metric(values["wer"], values["utterances"], values["wer_ci"]), "chance_wer": values["wer_chance"]}
                )
                for name, values in asr["sets"].items()
            },
        },
        "tts": {
            "wer": _metric(tts["wer"], tts["utterances"], tts["wer_ci"]),
            "cer": _metric(tts["cer"], tts["utterances"], tts["cer_ci"]),
            "chance_wer": tts["wer_chance"],
            "ceiling": _ceiling(inputs["ceiling"], tts["split"]),
            "judge": tts["judge"]["kind"],
            # every judge's figures, the headline judge's first (judge.kind, then judge.second)
            "judges": {
                kind: {
                    "wer": _metric(figures["wer"], figures["utterances"], figures["wer_ci"]),
                    "chance_wer": figures["wer_chance"],
                    "ceiling": _ceiling(inputs["ceiling"], tts["split"], kind),
                    "settings": describe_briefly(figures["judge"]),
                }
                for kind, figures in sorted(tts["judges"].items(), key=lambda item: item[0] != tts["judge"]["kind"])
            },
        },
        "audio_lm": {
            "accuracy": _metric(average["accuracy"], average["pairs"], average["ci"]),
            "score": average["score"],
            "kinds": {
                kind: {name: _metric(v["accuracy"], v["pairs"], v["ci"]) for name, v in scores.items()}
                for kind, scores in audio_lm["kinds"].items()
            },
            "chance": 0.5,
        },
        "spoken_qa": {
            "s2t_accuracy": _metric(qa["s2t"]["accuracy"], qa["s2t"]["questions"], qa["s2t"]["ci"]),
            "s2t_exact_match": _metric(qa["s2t"]["exact_match"], qa["s2t"]["questions"], qa["s2t"]["exact_match_ci"]),
            "s2s_accuracy": _metric(qa["s2s"]["accuracy"], qa["s2s"]["questions"], qa["s2s"]["ci"]) if "s2s" in qa else None,
            "s2s_exact_match": _metric(qa["s2s"]["exact_match"], qa["s2s"]["questions"], qa["s2s"]["exact_match_ci"])
            if "s2s" in qa
            else None,
            "s2s_chance_accuracy": qa["s2s"]["chance_accuracy"] if "s2s" in qa else None,
            "s2s_judges": {
                kind: {"accuracy": _metric(v["accuracy"], v["questions"], v["ci"]), "chance_accuracy": v["chance_accuracy"]}
                for kind, v in qa["s2s"]["judges"].items()
            }
            if "s2s" in qa
            else None,
            "t2t_accuracy": _metric(qa["t2t"]["accuracy"], qa["t2t"]["questions"], qa["t2t"]["ci"]) if "t2t" in qa else None,
            "by_kind": {
                kind: {path: _metric(v["accuracy"], v["questions"], v["ci"]) for path, v in paths.items()}
                for kind, paths in qa.get("by_kind", {}).items()
            },
        },
    }


def _ceiling(path, split: str, judge: str | None = None) -> dict:
    """A judge (default: the headline one) on the split's original recordings and on their
    resynthesis (stage unit_ceiling)."""
    measured = json.loads(Path(path).read_text()).get(split, {})
    figures = measured.get("judges", {}).get(judge, {}) if judge else measured
    keys = ("judge_wer_original", "resynth_wer", "resynth_wer_chance")
    return {key: figures[key] for key in keys if key in figures} | ({"utterances": measured["utterances"]} if measured else {})


def _value_and_ci(metric: dict) -> str:
    """Two table cells: the value and its 95% interval."""
    return f"{metric['value']:.3f} | {metric['ci_low']:.3f}–{metric['ci_high']:.3f}"


def _row(label: str, metric: dict | None, reference: str = "") -> str:
    if metric is None:
        return f"| {label} | not measured | | | {reference} |"
    return f"| {label} | {_value_and_ci(metric)} | {metric['n']} | {reference} |"


def _chance(value: float | None) -> str:
    return "" if value is None else f"chance {value:.3f}"


def _tts_reference(tts: dict) -> str:
    """Chance, and the resynthesis ceiling with its own chance (the ceiling's few sentences: its n)."""
    ceiling = tts["ceiling"]
    reference = _chance(tts["chance_wer"])
    if "resynth_wer" in ceiling:
        reference += f"; resynthesis ceiling {ceiling['resynth_wer']:.3f} (n {ceiling['utterances']}, its chance {ceiling['resynth_wer_chance']:.3f})"
    return reference


def _by_judge(tts: dict, qa: dict) -> list[str]:
    """The speech-output numbers as each judge heard them, with chance and that judge's ceiling."""
    lines = [
        "",
        "## Speech output by judge (each beside its chance: the same transcripts against the next item)",
        "",
        "| Judge | TTS WER | 95% CI | chance | resynthesis ceiling (n) | its chance | S→S accuracy | 95% CI | chance |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, figures in tts["judges"].items():
        wer, ceiling = figures["wer"], figures["ceiling"]
        s2s = (qa["s2s_judges"] or {}).get(kind)
        ceiling_cells = (
            f"{ceiling['resynth_wer']:.3f} ({ceiling['utterances']}) | {ceiling['resynth_wer_chance']:.3f}"
            if "resynth_wer" in ceiling
            else "| "
        )
        s2s_cells = f"{_value_and_ci(s2s['accuracy'])} | {s2s['chance_accuracy']:.3f}" if s2s else "not measured | |"
        lines.append(f"| {kind} | {_value_and_ci(wer)} | {figures['chance_wer']:.3f} | {ceiling_cells} | {s2s_cells} |")
    lines += ["", *(f"- {figures['settings']}" for figures in tts["judges"].values()), ""]
    return lines


def _float_paths(training: dict) -> str:
    """Where the training ran, which decides its float rounding (`tracking.float_path`)."""
    paths = {}
    for stage, summary in training.items():
        path = summary["float_path"]
        kernels = f"{path['torch.cpu_capability']} kernels on " if "torch.cpu_capability" in path else ""
        paths.setdefault(f"torch {path['torch.version']}, {kernels}{path['device']}", []).append(stage)
    where = "; ".join(f"{', '.join(stages)}: {path}" for path, stages in paths.items())
    return f"Trained with {where}. Another CPU instruction set trains to other numbers, about as far apart as another seed."


def markdown(report: dict) -> str:
    asr, tts, audio_lm, qa = report["asr"], report["tts"], report["audio_lm"], report["spoken_qa"]
    lines = [
        f"# MoST report: run `{report['run']}`",
        "",
        f"Model: the instruction-tuned checkpoint. Config hash `{report['config_hash']}`, git commit `{report['git']['git.commit']}`"
        f"{' (uncommitted changes)' if report['git']['git.dirty'] == 'true' else ''}. Fractions, not percent; CIs are 95% bootstrap over test items.",
        "",
        f"Speech input: {report['speech']['input']} ({report['speech']['features']} features); speech output: {report['speech']['units']} units.",
        "",
        _float_paths(report["training"]),
        "",
        "| Metric | Value | 95% CI | n | Reference |",
        "|---|---|---|---|---|",
        _row(f"ASR WER ({asr['set']})", asr["wer"], f"chance {asr['chance_wer']:.3f}"),
        _row(f"ASR WER, utterance mean ({asr['set']})", asr["utterance_mean_wer"]),
        _row(f"TTS WER ({tts['judge']} judge)", tts["wer"], _tts_reference(tts)),
        _row("TTS CER", tts["cer"]),
        _row(
            f"Audio LM accuracy (mean of {', '.join(audio_lm['kinds'])}; {audio_lm['score']} log-likelihood)",
            audio_lm["accuracy"],
            "chance 0.5",
        ),
        _row("Spoken QA S→T accuracy (containment)", qa["s2t_accuracy"]),
        _row("Spoken QA S→T exact match", qa["s2t_exact_match"]),
        _row("Spoken QA S→S accuracy (containment, judged)", qa["s2s_accuracy"], _chance(qa.get("s2s_chance_accuracy"))),
        _row("Spoken QA S→S exact match", qa["s2s_exact_match"]),
        _row("Same questions written, T→T accuracy (no speech path)", qa["t2t_accuracy"]),
        *_by_judge(tts, qa),
        "## ASR per test set",
        "",
        "| Set | WER | 95% CI | n | Chance WER |",
        "|---|---|---|---|---|",
    ]
    for name, values in asr["sets"].items():
        if "skipped" in values:
            lines.append(f"| {name} | skipped: {values['skipped']} | | | |")
        else:
            wer = values["wer"]
            lines.append(f"| {name} | {_value_and_ci(wer)} | {wer['n']} | {values['chance_wer']:.3f} |")
    lines += [
        "",
        "## Audio LM per kind (pair accuracy; chance 0.5)",
        "",
        "| Kind | Mean log-lik. | Sum log-lik. | Pairs |",
        "|---|---|---|---|",
    ]
    for kind, scores in audio_lm["kinds"].items():
        mean, total = scores["mean"], scores["sum"]
        lines.append(
            f"| {kind} | {mean['value']:.3f} ({mean['ci_low']:.3f}–{mean['ci_high']:.3f}) | {total['value']:.3f} ({total['ci_low']:.3f}–{total['ci_high']:.3f}) | {mean['n']} |"
        )
    lines += ["", "## Spoken QA per kind of question (containment accuracy, 95% CI)", "", "| Kind | S→T | T→T | n |", "|---|---|---|---|"]
    for kind, paths in qa["by_kind"].items():
        shown = {path: f"{m['value']:.3f} ({m['ci_low']:.3f}–{m['ci_high']:.3f})" for path, m in paths.items()}
        lines.append(f"| {kind} | {shown['s2t']} | {shown.get('t2t', 'not measured')} | {paths['s2t']['n']} |")
    tasks = sorted({task for summary in report["training"].values() for task in summary["dev_loss_end"]})
    lines += [
        "",
        "## Training (dev ASR WER and dev loss per task after each stage: forgetting shows here)",
        "",
        "| Stage | Steps | Train loss start → end | Dev ASR WER | " + " | ".join(f"dev {t}" for t in tasks) + " |",
        "|---|---|---|---|" + "---|" * len(tasks),
    ]
    for stage, summary in report["training"].items():
        dev = " | ".join(f"{summary['dev_loss_end'][t]:.3f}" if t in summary["dev_loss_end"] else "" for t in tasks)
        lines.append(
            f"| {stage} | {summary['steps']} | {summary['loss_start']:.3f} → {summary['loss_end']:.3f} | {summary['dev_asr_wer']:.3f} | {dev} |"
        )
    lines += ["", "## Plots", ""] + [f"![{name}](report_plots/{name})" for name in report["plots"]]
    lines += ["", "## Inputs (content md5)", "", *[f"- `{name}`: `{digest}`" for name, digest in report["inputs"].items()], ""]
    return "\n".join(lines)


def metric_bar(metric: dict) -> dict:
    return {"value": metric["value"], "ci_low": metric["ci_low"], "ci_high": metric["ci_high"]}
