"""Stage `posttrain`: stage-1 cross-modal post-training of the grafted model (ASR, TTS, text LM)."""

from most.stages import StageResult
from most.train.runner import run_stage


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    return run_stage("posttrain", cfg, inputs, outputs, threads)
