"""Per-stage compute requests from the config, as Snakemake resources (and thus sbatch flags).

The mapping follows snakemake-executor-plugin-slurm 2.8:
- one node: `gpu: N` becomes `--gpus=N`; the job step runs the rule once (`srun -n1`);
- several nodes: `nodes`, one task per node (`tasks`), GPUs per node as `gres: gpu:N` (`--gpus`
  would be a total for the whole job), `tasks_per_gpu: 0` so that `tasks` does not leak into
  `--ntasks-per-gpu`, and `mpi: srun` so that the plugin does not wrap the rule in `srun -n1`:
  the rule's shell starts one launcher per node itself (`multinode_launcher`).
"""

from __future__ import annotations

import shlex

MAIN_PROCESS_PORT = 29500


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
    return out


def multinode_launcher(resources: dict, accelerate_config: str, command: list[str]) -> str:
    """The shell line that runs `command` under `accelerate launch` on every node of the job.

    One srun task per node; each node's rank and the head node are read inside the task from
    SLURM's variables (hence the single quotes). For a single node it is a plain local launch.
    """
    gpus = max(resources["gpus"], 1)
    inner = " ".join(shlex.quote(part) for part in command)
    if resources["nodes"] <= 1:
        return f"accelerate launch --config_file {shlex.quote(accelerate_config)} --num_processes {gpus} {inner}"
    per_node = (
        "accelerate launch"
        f" --config_file {shlex.quote(accelerate_config)}"
        " --num_machines $SLURM_NNODES"
        f" --num_processes $(( SLURM_NNODES * {gpus} ))"
        " --machine_rank $SLURM_NODEID"
        " --main_process_ip $(scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1)"
        f" --main_process_port {MAIN_PROCESS_PORT}"
        f" {inner}"
    )
    return f"srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c {shlex.quote(per_node)}"
