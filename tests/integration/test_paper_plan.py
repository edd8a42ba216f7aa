"""The paper config planned as a cluster user plans it: Snakemake with the SLURM profile, and DVC."""

import json
import re
import shutil
from pathlib import Path

import pytest

from most import config
from tests.conftest import REPO, STAGES, copy_repo, git_init, run

PLUGINS = REPO / "tests" / "plugins"
PAPER_STAGES = [stage for stage in STAGES if stage != "pretrain_base"]  # the paper grafts a hub model


def planned_jobs(repo: Path, *args: str) -> dict[str, dict]:
    """Each job of a Snakemake dry run with the SLURM profile, by rule: its threads, resources and
    shell command, as Snakemake hands them to logger plugins (tests/plugins/snakemake_logger_plugin_jobplan)."""
    plan = repo / "plan.jsonl"
    command = ["snakemake", *args, "-n", "--cores", "all", "--profile", "slurm", "--logger", "jobplan", "--logger-jobplan-path", str(plan)]
    run([*command, "--configfile", "config/paper.yaml"], repo, PYTHONPATH=str(PLUGINS))  # --configfile last: it takes every word after it
    jobs = [json.loads(line) for line in plan.read_text().splitlines()]
    return {job["rule"]: job for job in jobs if job["rule"] != "stage_config"}


@pytest.mark.smoke
def test_snakemake_plans_the_paper_pipeline_with_its_cluster_requests(tmp_path):
    jobs = planned_jobs(copy_repo(tmp_path / "repo"))
    assert sorted(jobs) == sorted([*PAPER_STAGES, "all"])
    del jobs["all"]
    requested = config.load(REPO / "config" / "paper.yaml")["resources"]
    for stage, job in jobs.items():
        resources, want = job["resources"], requested[stage]
        assert resources["runtime"] == want["runtime"] and resources["mem_mb"] == want["mem_mb"], stage
        assert resources["cpus_per_task"] == want["cpus"], stage
        # the job uses the CPUs it asked for, not the submit host's count that caps Snakemake's {threads}
        assert f"--threads {want['cpus']}" in job["shell"], (stage, job["shell"])
        assert resources.get("slurm_partition") == (want["partition"] or None), stage
        if want["nodes"] > 1:
            assert (resources["nodes"], resources["tasks"], resources["gres"]) == (want["nodes"], want["nodes"], f"gpu:{want['gpus']}")
        else:
            assert "nodes" not in resources and resources.get("gpu") == (want["gpus"] or None), stage
    # multi-node post-training: 4 nodes x 8 GPUs, one launcher per node, FSDP
    assert requested["posttrain"]["nodes"] == 4 and requested["posttrain"]["gpus"] == 8
    assert (
        "most launch --gpus-per-node 8 --nodes 4 --accelerate-config config/accelerate/fsdp.yaml -- posttrain" in jobs["posttrain"]["shell"]
    )
    assert jobs["instruct"]["resources"]["gpu"] == 8 and jobs["eval_asr"]["resources"]["gpu"] == 1
    assert "gpu" not in jobs["download"]["resources"] and "gres" not in jobs["download"]["resources"]


def test_dvc_plans_the_paper_pipeline(tmp_path):
    """DVC reads config/config.yaml only: the paper config is copied over it and dvc.yaml re-exported."""
    repo = copy_repo(tmp_path / "repo")
    shutil.copy(repo / "config" / "paper.yaml", repo / "config" / "config.yaml")
    git_init(repo)
    run(["most", "export-dvc"], repo)
    assert "pretrain_base" not in (repo / "dvc.yaml").read_text()
    status = json.loads(run(["dvc", "status", "--json", "dvc.yaml"], repo).stdout)
    assert sorted(status) == sorted(PAPER_STAGES)  # every stage to run
    edges = re.findall(r'^"(\w+)" -> "(\w+)";$', run(["dvc", "dag", "--dot", "report"], repo).stdout, re.MULTILINE)
    assert all(PAPER_STAGES.index(a) < PAPER_STAGES.index(b) for a, b in edges) and {b for _, b in edges} == set(PAPER_STAGES[1:])
    # SNAKEMAKE_PROFILE=slurm: each DVC stage's `snakemake` submits its job through the SLURM profile
    result = run(["dvc", "repro", "--dry"], repo, check=False, SNAKEMAKE_PROFILE="slurm")
    planned = re.findall(r"Running stage '(\w+)':\n> (.+)", result.stdout)
    assert planned[0] == ("download", "snakemake --cores all download")
    if result.returncode == 0:
        assert planned == [(stage, f"snakemake --cores all {stage}") for stage in PAPER_STAGES]
    else:  # DVC 3.67 cannot dry-run past a stage whose outputs do not exist yet (treeverse/dvc#9021)
        assert "failed to reproduce 'prepare'" in result.stderr and "No such file or directory" in result.stderr, result.stderr


def test_snakemake_plans_the_paper_ablations_on_the_shared_upstream_with_their_gpus(tmp_path):
    jobs = planned_jobs(copy_repo(tmp_path / "repo"), "ablations")
    # the upstream of the graft and nothing after it: the ablations train from the graft themselves
    assert sorted(jobs) == sorted(["download", "prepare", "encode_features", "fit_units", "tokenize", "graft", "ablations"])
    ablation = jobs["ablations"]["shell"]
    assert "most launch --gpus-per-node 8 --nodes 1 --accelerate-config config/accelerate/fsdp.yaml -- ablations" in ablation
    assert "--kmeans results/paper/units/kmeans" in ablation and "--graft results/paper/graft" in ablation
    assert jobs["ablations"]["resources"]["gpu"] == 8
    paper = config.load(REPO / "config" / "paper.yaml")["ablations"]
    assert len(paper["seeds"]) >= 3 and "base_lm" not in paper["variants"]["no_shared"]  # a hub base: no from-scratch start
