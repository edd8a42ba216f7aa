"""A training stage's step history: in MLflow while it trains, and complete after a kill and a resume."""

import json
import os
import subprocess
import sys

import torch
from mlflow import MlflowClient

from most import tracking
from most.train.history import FILE, StepHistory, loss_curve


def tracked(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, tracking.stage_run("posttrain", {}, {"enabled": True, "uri": uri, "experiment": "history"}, {}, None, None)


def logged_steps(uri, run_id, name="loss"):
    return [(metric.step, metric.value) for metric in MlflowClient(tracking_uri=uri).get_metric_history(run_id, name)]


def test_steps_reach_mlflow_every_log_every_steps_while_training_runs(tmp_path):
    uri, run = tracked(tmp_path)
    with run as stage:
        history = StepHistory(tmp_path / "checkpoints", 0, log_every=2)
        history.append(1, {"loss": 3.0})
        assert logged_steps(uri, stage.run_id) == []  # not yet: every 2 steps
        history.append(2, {"loss": 2.5})
        assert logged_steps(uri, stage.run_id) == [(1, 3.0), (2, 2.5)]
        history.append(3, {"loss": 2.0}, last=True)
        assert logged_steps(uri, stage.run_id) == [(1, 3.0), (2, 2.5), (3, 2.0)]
    assert history.steps() == [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}, {"step": 3, "loss": 2.0}]
    times = [json.loads(line)["time_ms"] for line in (tmp_path / "checkpoints" / FILE).read_text().splitlines()]
    assert times == sorted(times) and times[0] > 1_600_000_000_000  # when each step finished, in ms


def test_a_resume_keeps_the_steps_up_to_its_checkpoint_and_logs_them_to_its_own_run(tmp_path):
    folder = tmp_path / "checkpoints"
    killed = StepHistory(folder, 0, log_every=100)  # no tracking: the steps are in the file only
    for step in range(1, 8):
        killed.append(step, {"loss": 10.0 - step})
    with open(folder / FILE, "a") as handle:
        handle.write('{"step": 8, "time_')  # the line the kill cut short
    uri, run = tracked(tmp_path)
    with run as stage:
        resumed = StepHistory(folder, 5, log_every=100)  # the checkpoint is step 5: steps 6 and 7 run again
        assert logged_steps(uri, stage.run_id) == [(step, 10.0 - step) for step in range(1, 6)]
        for step in range(6, 9):
            resumed.append(step, {"loss": 1.0 / step}, last=step == 8)
    assert [entry["step"] for entry in resumed.steps()] == list(range(1, 9))
    assert [step for step, _ in logged_steps(uri, stage.run_id)] == list(range(1, 9))
    assert [json.loads(line)["step"] for line in (folder / FILE).read_text().splitlines()] == list(range(1, 9))


def test_steps_inside_a_child_run_go_to_it_and_the_stage_run_gets_them_back_after(tmp_path):
    uri, run = tracked(tmp_path)
    with run as stage:
        with tracking.child_run("plain_moe seed 7", {"variant": "plain_moe", "seed": 7}) as child:
            StepHistory(tmp_path / "a", 0, log_every=1).append(1, {"loss": 2.0})
        StepHistory(tmp_path / "b", 0, log_every=1).append(1, {"loss": 5.0})
    client = MlflowClient(tracking_uri=uri)
    nested = client.get_run(child.run_id)
    assert nested.data.tags["mlflow.parentRunId"] == stage.run_id and nested.info.status == "FINISHED"
    assert nested.data.params == {"variant": "plain_moe", "seed": "7"} and nested.info.run_name == "plain_moe seed 7"
    assert logged_steps(uri, child.run_id) == [(1, 2.0)] and logged_steps(uri, stage.run_id) == [(1, 5.0)]


def test_a_child_run_that_raises_is_failed_and_outside_a_stage_is_a_no_op(tmp_path):
    uri, run = tracked(tmp_path)
    with run as stage:
        try:
            with tracking.child_run("mamoe seed 1", {}) as child:
                raise RuntimeError("diverged")
        except RuntimeError:
            pass
    assert MlflowClient(tracking_uri=uri).get_run(child.run_id).info.status == "FAILED"
    assert MlflowClient(tracking_uri=uri).get_run(stage.run_id).info.status == "FINISHED"
    with tracking.child_run("untracked", {}) as untracked:
        assert untracked.run_id is None


def test_the_loss_curve_keeps_the_fields_every_step_has():
    history = [
        {"step": 1, "loss": 3.0, "loss.asr": 2.0, "lr": 0.1, "grad_norm": 1.0},
        {"step": 2, "loss": 2.5, "loss.tts": 2.5, "lr": 0.2, "dev_loss.asr": 2.2},
    ]
    assert loss_curve(history) == [{"step": 1, "loss": 3.0, "lr": 0.1}, {"step": 2, "loss": 2.5, "lr": 0.2}]


def test_a_stage_run_is_tagged_with_the_float_path_its_kernels_take(tmp_path):
    uri, run = tracked(tmp_path)
    with run as stage:
        pass  # torch is loaded (this module imports it): a stage that used it
    tags = MlflowClient(tracking_uri=uri).get_run(stage.run_id).data.tags
    assert tags["torch.version"] == torch.__version__ and tags["torch.cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert tags["device"]  # the CPU model
    # the tag reads the dispatch torch really takes: pinned to the portable kernels, it says so
    pinned = subprocess.run(
        [sys.executable, "-c", "from most import tracking; print(tracking.float_path()['torch.cpu_capability'])"],
        env={**os.environ, "ATEN_CPU_CAPABILITY": "default"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert pinned.stdout.strip() == "DEFAULT"


def test_a_stage_that_never_loads_torch_is_not_tagged_with_a_float_path(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = (
        "import sys\nfrom most import tracking\n"
        f"with tracking.stage_run('prepare', {{}}, {{'enabled': True, 'uri': {uri!r}, 'experiment': 'x'}}, {{}}, None, None) as run:\n"
        "    pass\n"
        "print('torch' in sys.modules, run.run_id)"
    )
    loaded, run_id = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    tags = MlflowClient(tracking_uri=uri).get_run(run_id).data.tags
    assert loaded == "False" and tags["most.stage"] == "prepare"
    assert not {"torch.version", "torch.cpu_capability", "device"} & set(tags)
