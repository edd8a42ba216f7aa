"""Stage `ablations`: what MAMoE's modality split and the shared experts are worth, at equal compute,
over several training seeds.

Every variant in `ablations.variants` trains exactly like `posttrain` (same data, mix and settings)
for `ablations.steps` steps, once per seed in `ablations.seeds`, from its start:
- the graft, loaded with config fields changed (`routing: plain` lets every token use every expert;
  `speech_input: continuous` feeds encoder frames through the projector; `shared_expert_intermediate_size: 0`
  deletes the shared experts, which measures their removal, not the design);
- or, with a `base_lm` entry (embedded base only), a base LM pretrained with those settings changed and
  grafted the same way: a fair start for `no_shared` is a base pretrained without shared experts,
  with as many more routed experts per token as the shared ones were wide (equal active compute).
Each trained model is measured on the same test items: ASR WER, audio-LM pair accuracy
(`evaluate.audio_lm_task`, all kinds pooled), and the final dev loss per task; each start's held-out
text perplexity is measured before training. A variant's number is its mean over seeds, with a 95%
interval that resamples seeds and items; its difference from `ablations.baseline` is paired by seed
and item. Each variant x seed is an MLflow run nested under the stage's run; the table is the
stage's artifact. A finished variant x seed is kept (under `checkpoints/`) until the table is written,
so a rerun after a failure trains only what is missing.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import torch

from most.data.sources import output_voice_rows
from most.evaluate.ablations import check_settings, compare, markdown, measure_variant, measured_folder
from most.io import write_json
from most.stages import StageResult, code_digest, graft, pretrain_base, process_rank
from most.train.runner import checkpoint_folder

log = logging.getLogger(__name__)


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    import datasets

    from most.evaluate.audio_lm import KINDS
    from most.model.base_lm import held_out_texts
    from most.speech.feature_store import with_frames

    torch.set_num_threads(max(1, threads))
    settings = cfg["ablations"]
    check_settings(settings, cfg["model"])
    test = datasets.load_from_disk(str(Path(inputs["tokens"]) / "test"))
    asr_rows = with_frames([row for row in test if row["task"] == "asr"][: settings["asr_utterances"]], Path(inputs["features"]), "test")
    if len(asr_rows) < 2:
        raise ValueError(f"ablations: {inputs['tokens']}/test has {len(asr_rows)} asr utterances; at least 2 are needed")
    items = {
        "asr": asr_rows,
        "tts": output_voice_rows(test)[: settings["asr_utterances"]],  # TTS loss: the units of the output voice
        "pairs": [row for row in test if row["task"] in KINDS and row["units"]],
        "texts": held_out_texts(inputs["prepare"], cfg["model"]["eval_sentences"]),
    }
    output = Path(outputs["ablations"])  # working folders go to checkpoints/ beside it
    records, folders, data = {}, [], {}  # data: training examples per start and speech input, shared by its seeds
    for name, variant in settings["variants"].items():
        source, start_folder = start_model(variant, cfg, inputs, output, threads)
        folders += [start_folder] if start_folder else []
        for seed in settings["seeds"]:
            folder = measured_folder(name, variant, seed, cfg, inputs, output)
            folders.append(folder)
            record = measure_variant(name, variant, seed, source, cfg, inputs, items, folder, data)
            if record is not None:  # None on the other processes of a multi-GPU run: they train, the main one measures
                records[name, seed] = record
    if process_rank() != 0:
        return StageResult()
    table = compare(records, settings)
    write_json(table, Path(outputs["ablations"]))
    Path(outputs["ablations_md"]).write_text(markdown(table))
    for folder in folders:  # everything they held is in the table now
        shutil.rmtree(folder, ignore_errors=True)
    metrics = {f"{name}.{key}": row[key] for name, row in table["variants"].items() for key in ("asr_wer", "audio_lm_accuracy")}
    return StageResult(metrics=metrics, artifacts=[Path(outputs["ablations"]), Path(outputs["ablations_md"])])


def start_model(variant: dict, cfg: dict, inputs: dict, output: Path, threads: int) -> tuple[Path, Path | None]:
    """The model folder the variant trains from, and the folder made for it (None for the graft):
    with `base_lm`, a base LM pretrained with those settings changed, grafted like the pipeline's."""
    if "base_lm" not in variant:
        return Path(inputs["graft"]) / "model", None
    view = {**cfg, "base_lm": {**cfg["base_lm"], **variant["base_lm"]}}
    upstream = {key: inputs[key] for key in ("prepare", "tokens", "features", "kmeans")}
    folder = checkpoint_folder(
        "ablation-start", {"code": code_digest("ablations"), **{key: view[key] for key in ("seed", "base_lm", "model")}}, upstream, output
    )
    done = folder / "graft" / "report.json"
    if process_rank() != 0:  # the main process builds it; the others (same file system) wait for it
        while not done.exists():
            time.sleep(5)
    elif not done.exists():
        log.info("ablations: pretraining and grafting a base LM with %s", variant["base_lm"])
        pretrain_base.run(view, upstream, {"base_lm": folder / "base_lm"}, threads)
        graft.run(view, {**upstream, "base_lm": folder / "base_lm"}, {"graft": folder / "graft"}, threads)
    return folder / "graft" / "model", folder
