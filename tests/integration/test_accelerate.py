"""Training under `accelerate launch` with 2 CPU processes (gloo): DDP keeps the ranks identical and checkpoints."""

import json

import pytest
import torch

from tests.conftest import TINY_RESULTS, REPO, run

TWO_CPU_PROCESSES = [
    "accelerate",
    "launch",
    "--multi_gpu",  # the torchrun launcher; with no GPU, Accelerator(cpu=True) joins a gloo group
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]
SCRIPT = str(REPO / "tests" / "integration" / "accelerate_train.py")
# every two-process launch here listens on torch.distributed's default port: one worker runs them, one at a time
pytestmark = pytest.mark.xdist_group("torch-distributed-port")


def test_two_process_cpu_training(tmp_path):
    run([*TWO_CPU_PROCESSES, SCRIPT, "ranks", str(tmp_path)], REPO, timeout=600, PYTHONPATH=str(REPO))
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world"] == 2 and result["steps_logged"] == 10
    assert result["checksums"][0] == result["checksums"][1]
    assert (tmp_path / "checkpoints" / "step_10" / "model.safetensors").is_file()
    assert result["loss"][-1] < result["loss"][0]


def test_two_processes_compute_the_single_process_gradient(tmp_path):
    """Each rank trains on its slice of the same batch, and the loss is the mean over the whole
    batch's response tokens: DDP's averaged gradient equals one process's. Compared through Adam's
    first moment after one step (0.1 x the clipped gradient)."""
    run(["python", SCRIPT, "one-step", str(tmp_path / "one")], REPO, timeout=600, PYTHONPATH=str(REPO))
    run([*TWO_CPU_PROCESSES, SCRIPT, "one-step", str(tmp_path / "two")], REPO, timeout=600, PYTHONPATH=str(REPO))
    moments = []
    for world in ("one", "two"):
        state = torch.load(tmp_path / world / "checkpoints" / "step_1" / "optimizer.pt", weights_only=True)["optimizer"]["state"]
        moments.append([state[index]["exp_avg"] for index in sorted(state)])
    assert len(moments[0]) == len(moments[1]) > 10
    for one, two in zip(*moments, strict=True):
        torch.testing.assert_close(two, one, atol=1e-7, rtol=1e-4)


def test_a_training_stage_on_two_processes_matches_one(ran_repo, tmp_path):
    """`most launch` with 2 processes (the repository's DDP config, gloo on CPU): the stage trains,
    logs losses over both ranks, and only the main process evaluates and writes the outputs. The DDP
    config's precision set to float32, as the single process ran: precision comes from the accelerate
    config, and its bf16 would be autocast on the CPU too."""
    ddp = tmp_path / "ddp.yaml"
    ddp.write_text((REPO / "config" / "accelerate" / "ddp.yaml").read_text().replace("mixed_precision: bf16", "mixed_precision: 'no'"))
    results = ran_repo / TINY_RESULTS
    stage = ["posttrain", "--config", str(results / "config" / "posttrain.yaml"), "--prepare", str(results / "prepare")]
    stage += ["--tokens", str(results / "units" / "tokens"), "--features", str(results / "units" / "features")]
    stage += ["--graft", str(results / "graft"), "--output", str(tmp_path / "posttrain")]
    launched = run(
        ["most", "launch", "--gpus-per-node", "2", "--accelerate-config", str(ddp), "--", *stage, "--threads", "1"],
        ran_repo,
        timeout=600,
    )
    log = launched.stdout + launched.stderr
    assert f"launching: accelerate launch --config_file {ddp} --num_processes 2 -m most posttrain" in log
    assert log.count("dev ASR WER") == 1  # only the main process evaluates and writes
    two = json.loads((tmp_path / "posttrain" / "summary.json").read_text())
    one = json.loads((results / "posttrain" / "summary.json").read_text())
    assert two["steps"] == one["steps"] and set(two["loss_end"]) == set(one["loss_end"])
    # the first step's losses (both ranks' slices, reduced) are the single process's; later steps drift
    # apart: Adam's early updates (~lr x sign(gradient)) amplify float rounding in near-zero gradients.
    # (`loss_start` is each task's first appearance, which may be a later step: compare step 1 itself.)
    first = [json.loads((folder / "history.json").read_text())[0] for folder in (results / "posttrain", tmp_path / "posttrain")]
    losses = [{key: value for key, value in step.items() if key.startswith("loss")} for step in first]
    assert first[0]["step"] == first[1]["step"] == 1 and len(losses[0]) >= 2
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert two["dev_loss_end"]["asr"] < two["dev_loss_start"]["asr"]
    assert not list((tmp_path / "checkpoints").glob("*/step_*"))
