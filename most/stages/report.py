"""Stage `report`: every evaluation's headline with its 95% CI, the training summary, plots, provenance.

`results/<run>/report.json` holds, per metric, an object {value (a fraction), n, ci_low, ci_high}:
`asr.wer`, `tts.wer`, `tts.cer`, `audio_lm.accuracy`, `spoken_qa.s2t_accuracy`, `spoken_qa.s2s_accuracy`
(null when not measured), plus details, the config hash, the git commit and the content hashes of
every input. The speech-output numbers are the headline judge's (`judge.kind`); `tts.judges` and
`spoken_qa.s2s_judges` hold every judge's, each beside its chance. `report.md` shows the same as
tables; `report_plots/` holds the loss curves, the metric bars and the expert-load heatmap. All of it is also logged to the pipeline's parent MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from most.evaluate.report import headline, markdown, metric_bar, read_stage_json
from most.io import atomic_directory, tree_md5, write_json
from most.plots import expert_load_heatmap, loss_curves, metric_bars
from most.stages import StageResult

log = logging.getLogger(__name__)


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    from most.tracking import git_state

    report = headline(inputs)
    training = {}
    for stage in ("posttrain", "instruct"):
        summary = read_stage_json(inputs[stage], "summary.json")
        training[stage] = {key: summary[key] for key in ("steps", "seconds", "dev_asr_wer", "dev_loss_start", "dev_loss_end", "float_path")}
        training[stage] |= {key: sum(summary[key].values()) / len(summary[key]) for key in ("loss_start", "loss_end")}
    report |= {
        "run": cfg["run"],
        "config_hash": hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16],
        "git": git_state(),
        "speech": {"input": cfg["model"]["speech_input"], "features": cfg["units"]["features"], "units": cfg["units"]["k"]},
        "inputs": {name: tree_md5(path) for name, path in sorted(inputs.items())},
        "training": training,
    }
    plots = Path(outputs["report_plots"])
    with atomic_directory(plots) as folder:
        histories = {stage: json.loads((Path(inputs[stage]) / "history.json").read_text()) for stage in ("posttrain", "instruct")}
        loss_curves(histories, folder / "loss_curves.png")
        bars = [
            {"label": "ASR WER", **metric_bar(report["asr"]["wer"]), "reference": report["asr"]["chance_wer"]},
            {"label": "TTS WER", **metric_bar(report["tts"]["wer"]), "reference": report["tts"]["ceiling"].get("resynth_wer")},
            {"label": "audio-LM accuracy", **metric_bar(report["audio_lm"]["accuracy"]), "reference": 0.5},
            *[
                {"label": f"spoken QA {name}", **metric_bar(report["spoken_qa"][f"{name}_accuracy"])}
                for name in ("s2t", "s2s")
                if report["spoken_qa"][f"{name}_accuracy"] is not None
            ],
        ]
        metric_bars(bars, folder / "metrics.png")
        load = json.loads((Path(inputs["instruct"]) / "expert_load.json").read_text())["expert_load"]
        if load:
            expert_load_heatmap(load, folder / "expert_load.png", "instruct: expert load per modality and MoE layer")
    report["plots"] = sorted(path.name for path in plots.glob("*.png"))
    write_json(report, Path(outputs["report_json"]))
    Path(outputs["report"]).write_text(markdown(report))
    log.info("report: %s", Path(outputs["report"]))
    headline_metrics = {
        "asr.wer": report["asr"]["wer"]["value"],
        "tts.wer": report["tts"]["wer"]["value"],
        "audio_lm.accuracy": report["audio_lm"]["accuracy"]["value"],
        "spoken_qa.s2t_accuracy": report["spoken_qa"]["s2t_accuracy"]["value"],
    }
    if report["spoken_qa"]["s2s_accuracy"]:
        headline_metrics["spoken_qa.s2s_accuracy"] = report["spoken_qa"]["s2s_accuracy"]["value"]
    # every judge's, the headline one's included, so a comparison of runs shows them side by side
    headline_metrics |= {f"tts.{kind}.wer": figures["wer"]["value"] for kind, figures in report["tts"]["judges"].items()}
    headline_metrics |= {
        f"spoken_qa.{kind}.s2s_accuracy": v["accuracy"]["value"] for kind, v in (report["spoken_qa"]["s2s_judges"] or {}).items()
    }
    files = [Path(outputs["report"]), Path(outputs["report_json"]), *sorted(plots.glob("*.png"))]
    return StageResult(metrics=headline_metrics, artifacts=files, parent_metrics=headline_metrics, parent_artifacts=files)
