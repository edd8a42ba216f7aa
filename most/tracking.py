"""MLflow tracking: a parent run per pipeline invocation, a child run per stage job, and runs
nested under a stage for the trainings one stage compares (`child_run`).

Snakemake's `onstart` hook (main process only) creates the parent run with `start_pipeline` and
exports it to every job through environment variables; each `most <stage>` opens a child run with
`stage_run`; `onsuccess`/`onerror` close the parent with `end_pipeline`. A stage run by hand, with
no parent in the environment, makes a standalone run. A stage's run lists the upstream outputs it
reads as its input datasets (MLflow's Datasets), each with its `tree_md5` content digest.

The URI is MLFLOW_TRACKING_URI, else the config's tracking.uri, else an sqlite file
`results/mlflow.db` (absolute path) beside the run outputs. `tracking.enabled: false` turns all of
it off. We use MlflowClient throughout: nothing depends on MLflow's process-global active run, and
MLFLOW_RUN_ID (which means "resume this run") is never used to pass the parent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from most.config import flatten
from most.stages import input_context
from most.io import tree_md5

log = logging.getLogger(__name__)

ENV_ENABLED = "MOST_TRACKING"
ENV_PARENT = "MOST_MLFLOW_PARENT_RUN_ID"
ENV_URI = "MLFLOW_TRACKING_URI"
ENV_EXPERIMENT = "MLFLOW_EXPERIMENT_NAME"
MAX_PARAM_LENGTH = 6000
PARAM_BATCH = 100
# The experiment's kind, "Machine learning" in MLflow's UI (the value its own kind selector writes).
# Earlier MLflow 3 UIs read it to open an experiment on its runs rather than its GenAI view. The
# 3.17.2 UI reads it only when its workflow-type switch is off, and its bundle builds that feature
# flag as constant true, so the sidebar switch "GenAI | Model training" decides: kept in the
# browser (localStorage mlflow.workflowType, GenAI by default) or set by the page address's
# `?workflowType=machine_learning` (see `ui_route`).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def resolve_uri(tracking: dict) -> str:
    if os.environ.get(ENV_URI):
        return os.environ[ENV_URI]
    if tracking.get("uri"):
        return tracking["uri"]
    return f"sqlite:///{Path.cwd() / 'results' / 'mlflow.db'}"


def ui_route(experiment_id: str) -> str:
    """The MLflow UI's address (after the server's) of the experiment's training runs view."""
    return f"#/experiments/{experiment_id}?workflowType=machine_learning"


def settings_from_env() -> dict | None:
    """Tracking settings exported by the workflow's onstart hook, if any."""
    if ENV_ENABLED not in os.environ:
        return None
    return {
        "enabled": os.environ[ENV_ENABLED] == "1",
        "uri": os.environ.get(ENV_URI, ""),
        "experiment": os.environ.get(ENV_EXPERIMENT, "most"),
    }


def _client(tracking: dict):
    from mlflow import MlflowClient

    uri = resolve_uri(tracking)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri), uri


def _experiment_id(client, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.tags.get(EXPERIMENT_KIND[0]) is None:  # a store made before the tag was set
            client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
        return experiment.experiment_id
    # With a database backend and no server, artifacts would land in ./mlruns of whichever folder
    # the first job ran in; pin them next to the database instead.
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///") :]).parent / "mlartifacts" / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags=dict([EXPERIMENT_KIND]))
    except MlflowException:  # created concurrently by another job
        return client.get_experiment_by_name(name).experiment_id


def git_state() -> dict[str, str]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=20, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git.commit": commit, "git.dirty": "true" if dirty else "false"}


def float_path(device: str = "cpu") -> dict[str, str]:
    """What, beside the seed and the thread count, decides how a run rounds its floats: the torch build,
    the device, and on the CPU the instruction set its kernels dispatch to. The same values rerun to the
    same numbers; another instruction set (AVX2 against AVX-512) trains to other numbers, about as far
    apart as another seed (config/README.md, "The same seed on another CPU")."""
    import torch

    if str(device).startswith("cuda"):
        return {"torch.version": torch.__version__, "device": torch.cuda.get_device_name(torch.device(device))}
    model = ""
    if Path("/proc/cpuinfo").is_file():
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return {
        "torch.version": torch.__version__,
        "device": model or platform.processor() or platform.machine(),
        "torch.cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _log_params(client, run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    items = []
    for key, value in sorted(flatten(params).items()):
        text = value if isinstance(value, str) else json.dumps(value)
        items.append(Param(key[:250], text[:MAX_PARAM_LENGTH]))
    for start in range(0, len(items), PARAM_BATCH):
        client.log_batch(run_id, params=items[start : start + PARAM_BATCH])


def _log_metrics(client, run_id: str, metrics: dict, history=()) -> None:
    now = int(time.time() * 1000)
    _log_steps(client, run_id, [*((step, values, now) for step, values in history), (0, metrics, now)])


def _log_steps(client, run_id: str, entries) -> None:
    """(step, metrics, unix time in ms) entries, in batches."""
    from mlflow.entities import Metric

    items = [Metric(key, float(value), stamp, step) for step, values, stamp in entries for key, value in sorted(values.items())]
    for start in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[start : start + 1000])


def _log_artifacts(client, run_id: str, paths, folder: str | None = None) -> None:
    for path in paths:
        path = Path(path)
        if path.is_file() and path.stat().st_size:
            client.log_artifact(run_id, str(path), artifact_path=folder)


def input_digests(stage: str, inputs: dict) -> dict[str, str]:
    """The content hash (`tree_md5`, as the lineage records use) of each input that exists. One
    that does not is left out with a warning, not hashed as empty: a stage that needs it fails on its
    own, and graft's `base_lm` is absent by design where the base model comes from the hub."""
    digests = {}
    for name, path in sorted(inputs.items()):
        if Path(path).exists():
            digests[name] = tree_md5(path)
        else:
            log.warning("stage %s: input %s (%s) does not exist; its MLflow run does not list it", stage, name, path)
    return digests


DATASET_ATTEMPTS = 5


def _log_input_datasets(client, run_id: str, stage: str, inputs: dict, digests: dict[str, str]) -> None:
    """Each input the stage reads, as a dataset of the run (name, local source, content digest)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    context = InputTag(key=MLFLOW_DATASET_CONTEXT, value=input_context(stage))
    datasets = []
    for name, digest in sorted(digests.items()):
        source = LocalArtifactDatasetSource(str(Path(inputs[name]).resolve()))
        dataset = MetaDataset(source, name=name, digest=digest)
        datasets.append(DatasetInput(dataset=Dataset(**dataset.to_dict()), tags=[context]))
    if not datasets:
        return
    from mlflow.exceptions import MlflowException

    for attempt in range(DATASET_ATTEMPTS):
        try:
            client.log_inputs(run_id, datasets=datasets)
            return
        except MlflowException as error:
            # MLflow's SQL store looks a dataset up, then inserts it, without a lock: two stages that
            # read one output at once (the evaluations all read `instruct`) can both insert it, and the
            # loser fails on the unique key. Its retry finds the winner's row and links that.
            if "UNIQUE constraint failed: datasets" not in str(error) or attempt == DATASET_ATTEMPTS - 1:
                raise
            log.info("stage %s: another run logged the same input dataset at once; retrying", stage)
            time.sleep(0.2 * (attempt + 1))


# --------------------------------------------------------------------------------------------
# pipeline (parent) runs


def start_pipeline(config: dict, snakemake_version: str = "") -> str | None:
    """Create the parent run and export it (and the tracking settings) to every job."""
    tracking = config["tracking"]
    os.environ[ENV_ENABLED] = "1" if tracking["enabled"] else "0"
    if not tracking["enabled"]:
        return None
    client, uri = _client(tracking)
    os.environ[ENV_URI] = uri
    os.environ[ENV_EXPERIMENT] = tracking["experiment"]
    experiment_id = _experiment_id(client, tracking["experiment"], uri)
    tags = {
        **git_state(),
        "most.kind": "pipeline",
        "most.run": config["run"],
        "host": platform.node(),
        "snakemake.version": snakemake_version,
        "mlflow.source.name": "snakemake",
    }
    run = client.create_run(experiment_id, run_name=f"{config['run']}-{time.strftime('%Y%m%d-%H%M%S')}", tags=tags)
    _log_params(client, run.info.run_id, config)
    _log_artifacts(client, run.info.run_id, [Path("config") / "config.yaml"], "config")
    os.environ[ENV_PARENT] = run.info.run_id
    log.info("MLflow parent run %s at %s (in the MLflow UI: %s)", run.info.run_id, uri, ui_route(experiment_id))
    return run.info.run_id


def end_pipeline(success: bool, log_paths=None) -> None:
    """Close the parent run with the right status, attaching Snakemake's log(s) and dvc.lock."""
    run_id = os.environ.get(ENV_PARENT)
    if not run_id or os.environ.get(ENV_ENABLED) != "1":
        return
    client, _ = _client({"uri": os.environ.get(ENV_URI, "")})
    if isinstance(log_paths, str | os.PathLike):
        log_paths = [log_paths]
    _log_artifacts(client, run_id, [*(log_paths or []), "dvc.lock"], "pipeline")
    client.set_terminated(run_id, "FINISHED" if success else "FAILED")


# --------------------------------------------------------------------------------------------
# stage (child) runs


class StageRun:
    """Handle the CLI uses to report a stage's results into its run (a no-op when disabled)."""

    def __init__(self, client=None, run_id: str | None = None, parent_id: str | None = None) -> None:
        self.client, self.run_id, self.parent_id = client, run_id, parent_id

    def log_steps(self, entries) -> None:
        if self.client is not None:
            _log_steps(self.client, self.run_id, entries)

    def log_result(self, result) -> None:
        if self.client is None:
            return
        _log_metrics(self.client, self.run_id, result.metrics, result.history)
        _log_artifacts(self.client, self.run_id, result.artifacts, "reports")
        if self.parent_id:  # the pipeline's headline numbers, where a user opens the run first
            _log_metrics(self.client, self.parent_id, result.parent_metrics)
            _log_artifacts(self.client, self.parent_id, result.parent_artifacts, "report")


_active = StageRun()  # the run of the stage this process is running (a no-op outside one)


def log_training_steps(entries) -> None:
    """(step, metrics, unix time in ms) entries to the MLflow run of the stage this process runs,
    while it runs (a multi-day training shows its curves live); nothing when tracking is off."""
    _active.log_steps(entries)


@contextlib.contextmanager
def child_run(name: str, params: dict) -> Iterator[StageRun]:
    """A run nested under the stage this process runs (the ablation's variant x seed trainings:
    the same metric names in each, so MLflow's comparison view puts them side by side). While it is
    open, `log_training_steps` logs into it; FAILED if the body raises; a no-op outside a tracked stage."""
    global _active
    stage = _active
    if stage.client is None:
        yield StageRun()
        return
    parent = stage.client.get_run(stage.run_id)
    tags = {"most.kind": "child", "most.stage": parent.data.tags.get("most.stage", ""), "mlflow.parentRunId": stage.run_id}
    run = stage.client.create_run(parent.info.experiment_id, run_name=name, tags=tags)
    _log_params(stage.client, run.info.run_id, params)
    status = "FAILED"
    _active = StageRun(stage.client, run.info.run_id, stage.run_id)
    try:
        yield _active
        status = "FINISHED"
    finally:
        _active = stage
        stage.client.set_terminated(run.info.run_id, status)


@contextlib.contextmanager
def stage_run(
    stage: str, view: dict, tracking: dict | None, inputs: dict, config_path: str | None, log_file: str | None
) -> Iterator[StageRun]:
    """A child run of the pipeline's parent (or a standalone run), FAILED if the stage raises."""
    if not tracking or not tracking["enabled"]:
        yield StageRun()
        return
    client, uri = _client(tracking)
    experiment_id = _experiment_id(client, os.environ.get(ENV_EXPERIMENT) or tracking["experiment"], uri)
    parent = os.environ.get(ENV_PARENT)
    digests = input_digests(stage, inputs)
    tags = {
        **git_state(),
        "most.kind": "stage",
        "most.stage": stage,
        "host": platform.node(),
        **{f"input.{name}.md5": digest for name, digest in digests.items()},
    }
    if parent:
        tags["mlflow.parentRunId"] = parent
    if os.environ.get("SLURM_JOB_ID"):
        tags["slurm.job_id"] = os.environ["SLURM_JOB_ID"]
    run = client.create_run(experiment_id, run_name=stage, tags=tags)
    run_id = run.info.run_id
    status = "FAILED"
    global _active
    try:  # from here on the run ends FINISHED or FAILED, never left RUNNING
        _log_params(client, run_id, view)
        _log_input_datasets(client, run_id, stage, inputs, digests)
        _active = StageRun(client, run_id, parent)
        yield _active
        status = "FINISHED"
    finally:
        _active = StageRun()
        if "torch" in sys.modules:  # a stage that never loaded torch did no math whose rounding this names
            for key, value in float_path().items():
                client.set_tag(run_id, key, value)
        _log_artifacts(client, run_id, [p for p in (config_path,) if p], "config")
        if log_file:
            for handler in logging.getLogger().handlers:
                handler.flush()
            _log_artifacts(client, run_id, [log_file], "logs")
        client.set_terminated(run_id, status)
