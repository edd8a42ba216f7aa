"""Training under `accelerate launch` with 2 CPU processes (gloo): DDP keeps the ranks identical and checkpoints."""

import json

from tests.conftest import REPO, run


def test_two_process_cpu_training(tmp_path):
    run(
        [
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
            str(REPO / "tests" / "integration" / "accelerate_train.py"),
            str(tmp_path),
        ],
        REPO,
        timeout=600,
        PYTHONPATH=str(REPO),  # the launched script imports tests.unit helpers
    )
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world"] == 2 and result["steps_logged"] == 10
    assert result["checksums"][0] == result["checksums"][1]
    assert (tmp_path / "checkpoints" / "step_10" / "model.safetensors").is_file()
    assert result["loss"][-1] < result["loss"][0]
