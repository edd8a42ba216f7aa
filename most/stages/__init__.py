"""The pipeline's stages: this registry (what each reads, which code it runs, where its outputs go)
and one thin module per stage, `most.stages.<stage>`, whose `run(cfg, inputs, outputs, threads)`
calls the libraries (`most.data`, `most.speech`, `most.model`, `most.train`, `most.evaluate`).

The registry is the one source of the DAG: the CLI, the Snakemake rules (through
workflow/rules/common.smk) and the dvc.yaml export read it. Importing this package must stay cheap
(every SLURM job re-parses the Snakefile): it imports no stage module.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from most import REPO_ROOT


def process_rank() -> int:
    """This process's rank under `accelerate launch` / torchrun (0 when run alone)."""
    return int(os.environ.get("RANK", "0"))


@dataclass
class StageResult:
    """What a stage's `run` returns: metrics and report files for its MLflow run."""

    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (step, metrics) during training
    # the report's headline numbers and files also go to the pipeline's parent run
    parent_metrics: dict[str, float] = field(default_factory=dict)
    parent_artifacts: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # most.stages.<name>: holds `run(cfg, inputs, outputs, threads)`
    reads: tuple[str, ...]  # top-level config sections in the stage's view
    code: tuple[str, ...]  # the libraries (packages, modules of most/) whose source the outputs depend on, beside `module`
    inputs: tuple[str, ...]  # names of upstream outputs it reads (keys of OUTPUTS)
    outputs: tuple[str, ...]  # names of the outputs it writes; the first is its main output
    summary: str


# output name -> path under results/<run>/
OUTPUTS: dict[str, str] = {
    "download": "download",
    "prepare": "prepare",
    "features": "units/features",
    "kmeans": "units/kmeans",
    "tokens": "units/tokens",
    "vocoder": "units/vocoder",
    "ceiling": "units/ceiling.json",
    "ceiling_samples": "units/ceiling_samples",
    "base_lm": "base_lm",
    "graft": "graft",
    "posttrain": "posttrain",
    "instruct": "instruct",
    "eval_asr": "eval/asr",
    "eval_tts": "eval/tts",
    "eval_audio_lm": "eval/audio_lm",
    "eval_spoken_qa": "eval/spoken_qa",
    "report": "report.md",
    "report_json": "report.json",
    "report_plots": "report_plots",
    "ablations": "ablations.json",
    "ablations_md": "ablations.md",
}

_DATA_CODE = ("most/data", "most/io.py", "most/rng.py")
_SPEECH_CODE = ("most/speech", "most/data/manifest.py", "most/io.py", "most/rng.py")
_MODEL_CODE = ("most/model", "most/data/manifest.py", "most/speech/feature_store.py", "most/io.py", "most/rng.py")
# the base LM is transformers' DeepseekV2ForCausalLM: of most/model it uses only these two files
_BASE_LM_CODE = ("most/model/base_lm.py", "most/model/sequences.py", "most/data/manifest.py", "most/io.py", "most/rng.py")
# training decodes dev ASR with the evaluation code (and what it imports); the rest of most/evaluate is not its concern
_SCORING_CODE = (
    "most/evaluate/normalize.py",
    "most/evaluate/stats.py",
    "most/evaluate/generate.py",
    "most/evaluate/asr.py",
    "most/data/audio.py",
    "most/speech/features.py",
    "most/speech/kmeans.py",
    "most/speech/units.py",
)
_TRAIN_CODE = (
    "most/train",
    "most/model",
    *_SCORING_CODE,
    "most/speech/feature_store.py",
    "most/data/manifest.py",
    "most/data/sources.py",
    "most/plots.py",
    "most/io.py",
    "most/rng.py",
)
_EVAL_CODE = (
    "most/evaluate",
    "most/train",
    "most/model",
    "most/speech",
    "most/data/audio.py",
    "most/data/manifest.py",
    "most/data/sources.py",
    "most/plots.py",
    "most/io.py",
    "most/rng.py",
)

STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            "download",
            "most.stages.download",
            ("seed", "download"),
            _DATA_CODE + ("most/world",),  # the embedded corpus's texts
            (),
            ("download",),
            "fetch hub/local sources or synthesize the embedded corpus",
        ),
        Stage(
            "prepare",
            "most.stages.prepare",
            ("prepare",),
            _DATA_CODE,
            ("download",),
            ("prepare",),
            "manifests per split and the quality report",
        ),
        Stage(
            "encode_features",
            "most.stages.encode_features",
            ("units",),
            _SPEECH_CODE,
            ("prepare",),
            ("features",),
            "frame features of every utterance (log-mel, MFCC, HuBERT or the Whisper encoder), computed once",
        ),
        Stage(
            "fit_units",
            "most.stages.fit_units",
            ("seed", "units"),
            _SPEECH_CODE,
            ("features",),
            ("kmeans",),
            "k-means unit tokenizer fitted on training frames",
        ),
        Stage(
            "tokenize",
            "most.stages.tokenize",
            ("units",),
            _SPEECH_CODE,
            ("prepare", "features", "kmeans"),
            ("tokens",),
            "every utterance as deduplicated units with run lengths",
        ),
        Stage(
            "train_vocoder",
            "most.stages.train_vocoder",
            ("seed", "vocoder"),
            _SPEECH_CODE + ("most/data/sources.py",),  # the output voice's rows
            ("prepare", "tokens"),
            ("vocoder",),
            "unit-to-speech vocoder trained on the training set",
        ),
        Stage(
            "unit_ceiling",
            "most.stages.unit_ceiling",
            ("seed", "judge", "voice", "ceiling"),
            _SPEECH_CODE + ("most/data/sources.py", "most/evaluate/normalize.py", "most/evaluate/stats.py"),
            ("prepare", "kmeans", "vocoder"),
            ("ceiling", "ceiling_samples"),
            "judge WER on original vs resynthesized dev/test audio",
        ),
        Stage(
            "pretrain_base",
            "most.stages.pretrain_base",
            ("seed", "base_lm"),
            _BASE_LM_CODE,
            ("prepare",),
            ("base_lm",),
            "the embedded base LM: a small DeepSeek-V2-shaped MoE LM and its BPE tokenizer",
        ),
        Stage(
            "graft",
            "most.stages.graft",
            ("seed", "model"),
            _MODEL_CODE + ("most/speech/units.py", "most/speech/features.py", "most/speech/kmeans.py"),  # the unit centroids
            ("prepare", "tokens", "features", "kmeans", "base_lm"),
            ("graft",),
            "the base MoE LM grafted into MoST (MAMoE experts, unit tokens) and the graft report",
        ),
        Stage(
            "posttrain",
            "most.stages.posttrain",
            ("seed", "tasks", "posttrain"),
            _TRAIN_CODE,
            ("prepare", "tokens", "features", "graft"),
            ("posttrain",),
            "stage 1: cross-modal post-training (ASR, TTS, text LM) of the grafted model",
        ),
        Stage(
            "instruct",
            "most.stages.instruct",
            ("seed", "tasks", "instruct"),
            _TRAIN_CODE,
            ("prepare", "tokens", "features", "posttrain"),
            ("instruct",),
            "stage 2: mixed instruction tuning of the post-trained model",
        ),
        Stage(
            "eval_asr",
            "most.stages.eval_asr",
            ("seed", "tasks", "evaluate"),
            _EVAL_CODE,
            ("prepare", "tokens", "features", "kmeans", "instruct"),
            ("eval_asr",),
            "ASR WER per test set (espeak voices, the held-out neural voice, real LibriVox clips)",
        ),
        Stage(
            "eval_tts",
            "most.stages.eval_tts",
            ("seed", "tasks", "judge", "voice", "evaluate"),
            _EVAL_CODE,
            ("prepare", "tokens", "kmeans", "vocoder", "instruct"),
            ("eval_tts",),
            "TTS WER/CER: the model's units for the test texts, vocoded, transcribed by the judge",
        ),
        Stage(
            "eval_audio_lm",
            "most.stages.eval_audio_lm",
            ("seed", "tasks", "evaluate"),
            _EVAL_CODE,
            ("tokens", "instruct"),
            ("eval_audio_lm",),
            "sWUGGY/sBLIMP/StoryCloze-style pairs scored by the model's likelihood of their units",
        ),
        Stage(
            "eval_spoken_qa",
            "most.stages.eval_spoken_qa",
            ("seed", "tasks", "judge", "voice", "evaluate"),
            _EVAL_CODE,
            ("prepare", "tokens", "features", "kmeans", "vocoder", "instruct"),
            ("eval_spoken_qa",),
            "spoken questions answered in text (S->T) and in speech (S->S, judged)",
        ),
        Stage(
            "report",
            "most.stages.report",
            # everything the reported numbers depend on, for the config hash (resources and tracking do not)
            (
                "run",
                "seed",
                "download",
                "prepare",
                "units",
                "vocoder",
                "judge",
                "voice",
                "ceiling",
                "model",
                "base_lm",
                "tasks",
                "posttrain",
                "instruct",
                "evaluate",
            ),
            _EVAL_CODE,
            ("ceiling", "posttrain", "instruct", "eval_asr", "eval_tts", "eval_audio_lm", "eval_spoken_qa"),
            ("report", "report_json", "report_plots"),
            "report.md/json: every metric with its CI, plots, provenance",
        ),
        Stage(
            "ablations",
            "most.stages.ablations",
            # model and base_lm: a variant may start from a base pretrained and grafted with them changed
            ("seed", "model", "base_lm", "tasks", "posttrain", "evaluate", "ablations"),
            _EVAL_CODE + ("most/stages/pretrain_base.py", "most/stages/graft.py"),  # a variant's own base and graft
            ("prepare", "tokens", "features", "kmeans", "graft"),
            ("ablations", "ablations_md"),
            "MAMoE vs its variants (plain MoE, masked softmax, no shared experts, continuous input), equal compute, several seeds",
        ),
    )
}


# how a stage uses the upstream outputs it reads (the context of its MLflow input datasets)
_TRAINS_ON_INPUTS = frozenset({"fit_units", "train_vocoder", "pretrain_base", "posttrain", "instruct", "ablations"})
_MEASURES_INPUTS = frozenset({"unit_ceiling", "eval_asr", "eval_tts", "eval_audio_lm", "eval_spoken_qa", "report"})


def input_context(stage: str) -> str:
    """ "training", "evaluation", or "input" for a stage that only transforms what it reads."""
    if stage in _TRAINS_ON_INPUTS:
        return "training"
    return "evaluation" if stage in _MEASURES_INPUTS else "input"


def builds_base_lm(config: dict) -> bool:
    """The embedded default pretrains its base LM; a hub or folder base is loaded by graft directly."""
    return config["model"]["base"] == "embedded"


TARGET_ONLY = ("ablations",)  # stages that run only when named (`snakemake ablations`), never by rule all


def default_stages(config: dict) -> list[str]:
    """The stages a plain `snakemake` runs (rule all), in pipeline order: all but the `TARGET_ONLY`
    ones, and `pretrain_base` only for the embedded base."""
    return [name for name in STAGES if name not in TARGET_ONLY and (name != "pretrain_base" or builds_base_lm(config))]


def _producers() -> dict[str, str]:
    """Output name -> the stage that writes it."""
    return {output: stage.name for stage in STAGES.values() for output in stage.outputs}


def stage_inputs(stage: str, config: dict) -> list[str]:
    """The upstream outputs `stage` reads under `config`: those of the stages that run (graft reads
    base_lm only where pretrain_base runs)."""
    producer, running = _producers(), default_stages(config)
    return [name for name in STAGES[stage].inputs if producer[name] in running]


def upstream_stages(stage: str) -> list[str]:
    """Every stage whose outputs `stage` reads, directly or through others, in pipeline order."""
    producer = _producers()
    found: set[str] = set()
    pending = [producer[name] for name in STAGES[stage].inputs]
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending += [producer[output] for output in STAGES[name].inputs]
    return [name for name in STAGES if name in found]


def code_paths(stage: str) -> list[str]:
    """The sources the stage runs, relative to the checkout: its own module, then its libraries."""
    return [STAGES[stage].module.replace(".", "/") + ".py", *STAGES[stage].code]


def code_digest(stage: str) -> str:
    """sha256 over the Python sources the stage runs (`code_paths`): a code edit there reruns the stage."""
    digest = hashlib.sha256()
    for package in code_paths(stage):
        root = REPO_ROOT / package
        if not root.exists():
            raise FileNotFoundError(f"stage {stage}: code path {package} does not exist")
        for path in [root] if root.is_file() else sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()[:16]


def is_folder(output: str) -> bool:
    """Whether output `output` is a folder (a path without a file suffix) rather than one file."""
    return Path(OUTPUTS[output]).suffix == ""


def output_path(run: str, output: str) -> Path:
    return Path("results") / run / OUTPUTS[output]
