"""Config resources -> Snakemake resources -> the sbatch line the SLURM plugin really builds."""

import subprocess

import pytest
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

from most import config
from most.workflow_resources import accelerate_config, launch_command, snakemake_resources
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


def test_multi_node_launch_runs_one_accelerate_per_node_and_passes_arguments_verbatim(tmp_path):
    paper = config.load(REPO / "config" / "paper.yaml")["resources"]["posttrain"]
    argv = launch_command(paper["gpus"], paper["nodes"], "config/accelerate/fsdp.yaml", ["posttrain", "--config", "a b; touch pwned"])
    assert argv[:6] == ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "bash", "-c", argv[5]]
    script = argv[5]
    assert '--num_machines "$SLURM_NNODES"' in script and '--machine_rank "$SLURM_NODEID"' in script
    assert f"$(( SLURM_NNODES * {paper['gpus']} ))" in script and script.endswith('-m most "$@"')
    assert argv[7:] == ["posttrain", "--config", "a b; touch pwned"]  # positional parameters: no shell parsing
    # run the per-node script as srun would, with accelerate replaced by a recorder of its argv
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "accelerate").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD"\n')
    (fake / "scontrol").write_text("#!/bin/sh\necho node-a\necho node-b\n")
    for tool in fake.iterdir():
        tool.chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "RECORD": str(tmp_path / "argv"), "SLURM_NNODES": "4", "SLURM_NODEID": "2"}
    subprocess.run(argv[3:], env={**env, "SLURM_JOB_NODELIST": "node-[a-b]"}, cwd=tmp_path, check=True)
    recorded = (tmp_path / "argv").read_text().splitlines()
    assert recorded[recorded.index("--num_processes") + 1] == str(4 * paper["gpus"])
    assert recorded[recorded.index("--machine_rank") + 1] == "2" and recorded[recorded.index("--main_process_ip") + 1] == "node-a"
    assert recorded[-5:] == ["-m", "most", "posttrain", "--config", "a b; touch pwned"] and not (tmp_path / "pwned").exists()


def test_single_node_launch_is_one_local_accelerate_launch():
    argv = launch_command(4, 1, "config/accelerate/ddp.yaml", ["instruct", "--threads", "8"])
    assert argv == [
        "accelerate",
        "launch",
        "--config_file",
        "config/accelerate/ddp.yaml",
        "--num_processes",
        "4",
        "-m",
        "most",
        "instruct",
        "--threads",
        "8",
    ]
    cpu = snakemake_resources(config.load(REPO / "config" / "config.yaml")["resources"]["posttrain"])
    assert (cpu["launch_gpus"], cpu["launch_nodes"], cpu["launch_accelerate"]) == (0, 1, "config/accelerate/cpu.yaml")
    assert launch_command(0, 1, cpu["launch_accelerate"], ["posttrain"])[4:6] == ["--num_processes", "1"]
    assert accelerate_config({"gpus": 2, "accelerate": ""}) == "config/accelerate/ddp.yaml"


@pytest.mark.parametrize("name", ["cpu", "ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_accelerate_configs_parse(name):
    from accelerate.commands.config.config_args import load_config_from_file

    parsed = load_config_from_file(str(REPO / "config" / "accelerate" / f"{name}.yaml"))
    expected = {"cpu": "NO", "ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED"}[name]
    assert parsed.distributed_type.name == expected
    assert parsed.mixed_precision == ("no" if name == "cpu" else "bf16")
    if name.startswith("deepspeed"):
        assert parsed.deepspeed_config["zero_stage"] == int(name[-1])
    if name == "fsdp":
        assert parsed.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "MoSTDecoderLayer"


@pytest.mark.parametrize("stage", ["download", "prepare", "posttrain", "instruct"])
def test_embedded_stages_are_cpu_jobs(stage):
    resources = snakemake_resources(config.load(REPO / "config" / "config.yaml")["resources"][stage])
    assert "gpu" not in resources and "gres" not in resources and "nodes" not in resources
