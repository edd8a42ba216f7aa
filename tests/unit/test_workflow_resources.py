"""Config resources -> Snakemake resources -> the sbatch line the SLURM plugin really builds."""

import shlex

import pytest
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

from most import config
from most.workflow_resources import multinode_launcher, snakemake_resources
from tests.conftest import REPO


class Resources(dict):
    """What a Snakemake job's `resources` offers the plugin: .get and attribute access."""

    __getattr__ = dict.__getitem__


class Job:
    def __init__(self, resources: dict, threads: int):
        self.resources = Resources(resources)
        self.threads = threads
        self.name = "posttrain"
        self.is_group = lambda: False


def sbatch(stage_resources: dict) -> str:
    resources = snakemake_resources(stage_resources)
    params = {"run_uuid": "uuid", "slurm_logfile": "log", "comment_str": "rule", "account": "", "partition": "", "workdir": "."}
    job = Job(resources, threads=stage_resources["cpus"])
    return get_submit_command(job, params) + set_gres_string(job)


def test_paper_training_is_a_multi_node_gpu_job():
    paper = config.load(REPO / "config" / "paper.yaml")["resources"]["posttrain"]
    line = sbatch(paper)
    assert f"--nodes={paper['nodes']}" in line
    assert f"--ntasks={paper['nodes']}" in line  # one launcher per node
    assert f"--gres=gpu:{paper['gpus']}" in line  # per node; --gpus would be a job total
    assert "--gpus" not in line and "--ntasks-per-gpu" not in line
    assert f"--mem {paper['mem_mb']}" in line and f"-t {paper['runtime']}" in line
    assert f"--cpus-per-task={paper['cpus']}" in line


def test_single_node_gpu_and_cpu_jobs():
    single = {"cpus": 8, "mem_mb": 64000, "runtime": 240, "gpus": 4, "nodes": 1, "partition": "gpu"}
    resources = snakemake_resources(single)
    assert resources["gpu"] == 4 and resources["slurm_partition"] == "gpu" and "nodes" not in resources and "mpi" not in resources
    line = sbatch(single)
    assert "--gpus=4" in line and "--nodes" not in line
    cpu = sbatch({"cpus": 2, "mem_mb": 4000, "runtime": 30, "gpus": 0, "nodes": 1, "partition": ""})
    assert "--ntasks=1" in cpu and "gpu" not in cpu


def test_multinode_launcher_runs_one_accelerate_per_node():
    paper = config.load(REPO / "config" / "paper.yaml")["resources"]["posttrain"]
    line = multinode_launcher(paper, "config/accelerate/fsdp.yaml", ["python", "-m", "most", "posttrain", "--config", "a b.yaml"])
    words = shlex.split(line)
    assert words[:4] == ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "bash"]
    inner = words[-1]
    assert "--num_machines $SLURM_NNODES" in inner and "--machine_rank $SLURM_NODEID" in inner
    assert f"$(( SLURM_NNODES * {paper['gpus']} ))" in inner
    assert inner.endswith("python -m most posttrain --config 'a b.yaml'")
    local = multinode_launcher({**paper, "nodes": 1}, "ddp.yaml", ["python", "-m", "most"])
    assert local == f"accelerate launch --config_file ddp.yaml --num_processes {paper['gpus']} python -m most"


@pytest.mark.parametrize("stage", ["download", "prepare", "posttrain", "instruct"])
def test_embedded_stages_are_cpu_jobs(stage):
    resources = snakemake_resources(config.load(REPO / "config" / "config.yaml")["resources"][stage])
    assert "gpu" not in resources and "gres" not in resources and "nodes" not in resources
