"""`most <stage> ...`: thin entry points, one per stage. The logic lives in each stage's `run`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import sys
from pathlib import Path

from most import config, stages

log = logging.getLogger("most")


def _add_stage(commands, stage: stages.Stage) -> None:
    parser = commands.add_parser(stage.name, help=stage.summary, description=f"Stage `{stage.name}`: {stage.summary}.")
    parser.add_argument(
        "--config",
        default=str(config.DEFAULT_CONFIG),
        help="whole config file, or the stage view the workflow wrote (default: %(default)s)",
    )
    for name in stage.inputs:
        parser.add_argument(f"--{_flag(name)}", metavar="PATH", help=f"input `{name}` (default: results/<run>/{stages.OUTPUTS[name]})")
    main, *extra = stage.outputs
    parser.add_argument("--output", metavar="PATH", help=f"output `{main}` (default: results/<run>/{stages.OUTPUTS[main]})")
    for name in extra:
        parser.add_argument(f"--{_flag(name)}", metavar="PATH", help=f"output `{name}` (default: results/<run>/{stages.OUTPUTS[name]})")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU threads or worker processes (the workflow passes resources.<stage>.cpus); a rerun with the same "
        "count gives identical outputs, another count can round floats differently and so change generated outputs",
    )
    parser.add_argument("--log", metavar="FILE", help="this job's log file, attached to its MLflow run")
    parser.set_defaults(handler=lambda args: run_stage(stage.name, args))


def _flag(name: str) -> str:
    return name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="most",
        description="MoST reproduction: run one pipeline stage (the workflow runs them all: `snakemake --cores all`).",
    )
    commands = parser.add_subparsers(title="stages", metavar="<stage>", required=True)
    for stage in stages.STAGES.values():
        _add_stage(commands, stage)
    launch = commands.add_parser(
        "launch",
        help="run a stage under `accelerate launch` (the training rules use it)",
        description="Run `most <stage> ...` under accelerate launch: one process per GPU, one srun task per node.",
    )
    launch.add_argument("--gpus-per-node", type=int, default=0, help="processes per node (0: one CPU process)")
    launch.add_argument("--nodes", type=int, default=1, help="nodes of this SLURM job")
    launch.add_argument("--accelerate-config", default="", help="accelerate config file (default: config/accelerate/cpu.yaml or ddp.yaml)")
    launch.add_argument("stage_args", nargs=argparse.REMAINDER, metavar="<stage> ...", help="the stage and its arguments")
    launch.set_defaults(handler=_launch)
    from most import inference

    inference.add_commands(commands)
    export = commands.add_parser(
        "export-dvc", help="write dvc.yaml and pipelines/ablations/dvc.yaml from the stage registry (or --check them)"
    )
    export.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml differs from a fresh export")
    export.set_defaults(handler=_export_dvc)
    return parser


def usable_threads(requested: int) -> int:
    """`requested`, but at most this process's share of the CPUs it may run on (a SLURM allocation
    or taskset; split among the processes `accelerate launch` started on this node)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = available // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(requested, share))


def run_stage(name: str, args: argparse.Namespace) -> int:
    from most import tracking

    view, whole = config.load_for_stage(args.config, name)
    stage = stages.STAGES[name]
    main, *extra = stage.outputs
    given = {main: args.output, **{n: getattr(args, n) for n in (*stage.inputs, *extra)}}
    if whole is None and any(value is None for value in given.values()):
        raise config.ConfigError(f"{args.config} is a stage view without `run`: pass --output and every input and output path")
    paths = {n: Path(value) if value is not None else stages.output_path(whole["run"], n) for n, value in given.items()}
    inputs = {n: paths[n] for n in stage.inputs}
    outputs = {n: paths[n] for n in stage.outputs}
    tracking_settings = tracking.settings_from_env() or (whole["tracking"] if whole else None)
    if stages.process_rank() != 0:  # under accelerate launch only the main process tracks
        tracking_settings = None
    module = importlib.import_module(stage.module)
    log.info("stage %s: config %s, inputs %s, outputs %s", name, args.config, _show(inputs), _show(outputs))
    with tracking.stage_run(name, view, tracking_settings, inputs, args.config, args.log) as tracked:
        result = module.run(view, inputs, outputs, threads=usable_threads(args.threads))
        tracked.log_result(result)
    log.info("stage %s done: %s", name, ", ".join(f"{k}={v}" for k, v in list(result.metrics.items())[:12]))
    return 0


def _show(paths: dict) -> dict[str, str]:
    return {name: str(path) for name, path in paths.items()}


def _launch(args: argparse.Namespace) -> int:
    from most.workflow_resources import accelerate_config, launch_command

    stage_args = args.stage_args[1:] if args.stage_args[:1] == ["--"] else args.stage_args
    if not stage_args or stage_args[0] not in stages.STAGES:
        raise config.ConfigError(f"most launch: name a stage after the options (one of {', '.join(stages.STAGES)})")
    resources = {"gpus": args.gpus_per_node, "accelerate": args.accelerate_config}
    argv = launch_command(args.gpus_per_node, args.nodes, accelerate_config(resources), stage_args)
    log.info("launching: %s", shlex.join(argv))
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # replaces this process: SLURM's signals reach the launcher directly


def _export_dvc(args: argparse.Namespace) -> int:
    from most import dvc_pipeline

    return dvc_pipeline.main(check=args.check)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except config.ConfigError as error:
        log.error("%s", error)
        return 2
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        if args.handler.__module__ != "most.inference":
            raise
        log.error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
