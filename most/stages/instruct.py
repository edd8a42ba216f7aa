"""Stage `instruct`: stage-2 mixed instruction tuning of the post-trained model."""

from most.stages import StageResult
from most.train.runner import run_stage


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    return run_stage("instruct", cfg, inputs, outputs, threads)
