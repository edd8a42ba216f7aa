"""Per-stage compute requests from the config, as Snakemake resources (and thus sbatch flags), the
environment every job inherits, and the `accelerate launch` command line that training stages run with.

The mapping follows snakemake-executor-plugin-slurm 2.8:
- one node: `gpu: N` becomes `--gpus=N`; the job step runs the rule once (`srun -n1`);
- several nodes: `nodes`, one task per node (`tasks`), GPUs per node as `gres: gpu:N` (`--gpus`
  would be a total for the whole job), `tasks_per_gpu: 0` so that `tasks` does not leak into
  `--ntasks-per-gpu`, and `mpi: srun` so that the plugin does not wrap the rule in `srun -n1`:
  the rule's command starts one launcher per node itself (`launch_command`).
The `launch_*` resources carry the launch shape to the rule's command; the plugin ignores them, and
resources (unlike params) never trigger a rerun.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

MAIN_PROCESS_PORT = 29500
ACCELERATE_CONFIGS = "config/accelerate"  # relative to the repository root, where every job runs


def export_job_environment(repo: Path) -> None:
    """Every job runs the checkout being run (`repo` first on PYTHONPATH) and the `most` installed beside
    the interpreter running Snakemake, activated or not (conda envs put theirs first)."""
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH", "")) if p)
    os.environ["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH", "")))


def snakemake_resources(resources: dict) -> dict:
    """Snakemake `resources:` for one stage's config entry (config `resources.<stage>`)."""
    out = {"mem_mb": resources["mem_mb"], "runtime": resources["runtime"], "cpus_per_task": resources["cpus"]}
    if resources["partition"]:
        out["slurm_partition"] = resources["partition"]
    if resources["nodes"] > 1:
        out.update(nodes=resources["nodes"], tasks=resources["nodes"], tasks_per_gpu=0, mpi="srun")
        if resources["gpus"]:
            out["gres"] = f"gpu:{resources['gpus']}"
    elif resources["gpus"]:
        out["gpu"] = resources["gpus"]
    out.update(launch_nodes=resources["nodes"], launch_gpus=resources["gpus"], launch_accelerate=accelerate_config(resources))
    return out


def accelerate_config(resources: dict) -> str:
    """The stage's accelerate config file: its `accelerate` entry, else one CPU process or DDP on the GPUs."""
    return resources.get("accelerate") or f"{ACCELERATE_CONFIGS}/{'ddp' if resources['gpus'] else 'cpu'}.yaml"


def launch_command(gpus_per_node: int, nodes: int, config_file: str, stage_args: list[str]) -> list[str]:
    """argv that runs `python -m most <stage_args>` under `accelerate launch`, one process per GPU
    (one process on a CPU node). Several nodes: one srun task per node, each reading its rank and the
    head node from SLURM's variables inside the task (hence the single-quoted script)."""
    processes = max(gpus_per_node, 1)
    if nodes <= 1:
        return ["accelerate", "launch", "--config_file", config_file, "--num_processes", str(processes), "-m", "most", *stage_args]
    per_node = (
        "exec accelerate launch"
        f" --config_file {shlex.quote(config_file)}"
        ' --num_machines "$SLURM_NNODES"'
        f" --num_processes $(( SLURM_NNODES * {processes} ))"
        ' --machine_rank "$SLURM_NODEID"'
        ' --main_process_ip "$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"'
        f" --main_process_port {MAIN_PROCESS_PORT}"
        ' -m most "$@"'
    )
    # the stage's arguments travel as bash's positional parameters: never parsed by a shell
    return ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "bash", "-c", per_node, "most-launch", *stage_args]
