"""The whole pipeline through `snakemake --profile slurm` on a real single-node SLURM cluster.

The stages that ask for GPUs in config/paper.yaml ask for none here (`resources.*.gpus: 0`, as in
the embedded default): the test cluster has CPUs only."""

import filecmp
import json
import subprocess

import pytest
from mlflow import MlflowClient

from tests.conftest import TINY_RESULTS, REPO, STAGES, copy_repo, git_init, run, tiny_config, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]  # about six minutes: `make test-e2e`
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"


@pytest.fixture(scope="module")
def cluster():
    started = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=900)
    if started.returncode == 3:
        pytest.skip(started.stderr.strip())
    assert started.returncode == 0, started.stderr
    yield
    subprocess.run([str(CLUSTER), "stop"], capture_output=True, timeout=120)


def test_every_stage_runs_as_a_slurm_job_with_the_same_results(cluster, ran_repo, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    write_config(repo, tiny_config())
    git_init(repo)
    # this test cluster keeps no accounting database: job states come from squeue
    result = run(
        [
            "snakemake",
            "--cores",
            "all",
            "--profile",
            "slurm",
            "--slurm-status-command",
            "squeue",
            "--slurm-init-seconds-before-status-checks",
            "2",
        ],
        repo,
        timeout=1200,
    )
    log = result.stdout + result.stderr
    assert "has been submitted with SLURM jobid" in log
    for stage in STAGES:
        assert list((repo / "results" / "slurm-logs" / f"rule_{stage}").glob("*.log")), f"no SLURM log for {stage}"
    ours, local = repo / TINY_RESULTS / "prepare", ran_repo / TINY_RESULTS / "prepare"
    files = sorted(p.relative_to(local) for p in local.rglob("*.json*"))
    assert files and [str(f) for f in files if not filecmp.cmp(ours / f, local / f, shallow=False)] == []
    # the same numbers as the local run (CPU determinism), the evaluations included
    ours, local = (json.loads((r / TINY_RESULTS / "report.json").read_text()) for r in (repo, ran_repo))
    assert {k: ours[k] for k in ("asr", "tts", "audio_lm", "spoken_qa")} == {k: local[k] for k in ("asr", "tts", "audio_lm", "spoken_qa")}
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'results' / 'mlflow.db'}")
    stage_runs = client.search_runs([client.get_experiment_by_name("most").experiment_id], "tags.`most.kind` = 'stage'")
    assert {r.info.run_name for r in stage_runs} == set(STAGES)
    assert all(r.data.tags.get("slurm.job_id") and r.data.tags.get("mlflow.parentRunId") for r in stage_runs)
