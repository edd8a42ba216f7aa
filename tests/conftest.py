"""Shared fixtures: a small config, temporary copies of the repository, and a finished tiny run."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from filelock import FileLock
from snakemake.utils import update_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY_CONFIG = REPO / ".test" / "config" / "config.yaml"
TINY_RESULTS = Path("results") / yaml.safe_load(TINY_CONFIG.read_text())["run"]  # the tiny run's outputs, in a repository copy


# every stage of the embedded default, in pipeline order
STAGES = (
    "download",
    "prepare",
    "encode_features",
    "fit_units",
    "tokenize",
    "train_vocoder",
    "unit_ceiling",
    "pretrain_base",
    "graft",
    "posttrain",
    "instruct",
    "eval_asr",
    "eval_tts",
    "eval_audio_lm",
    "eval_spoken_qa",
    "report",
)


def tiny_config() -> dict:
    """config/config.yaml with .test/config/config.yaml merged over it, as Snakemake merges a
    `--configfile`: the embedded default shrunk to seconds per stage."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load(TINY_CONFIG.read_text()))
    return config


def write_config(repo: Path, config: dict) -> None:
    (repo / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def edit_config(repo: Path, edit) -> None:
    """Apply `edit(config)` to the repository's config/config.yaml."""
    path = repo / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def repo_files() -> list[str]:
    """The files a clone of the repository would have (tracked plus untracked, not ignored)."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # dvc.lock records a local run of the full config, not the repository's content
    return [name for name in listing.split("\0") if name and name != "dvc.lock" and (REPO / name).is_file()]


def copy_repo(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in repo_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, destination)
    return target


def env(**extra: str) -> dict:
    """The environment of a user who activated the venv; MLflow defaults to results/mlflow.db."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MOST_", "DVC_", "SNAKEMAKE_"))}
    environment["PATH"] = f"{BIN}{os.pathsep}{environment.get('PATH', '')}"
    environment["DVC_NO_ANALYTICS"] = "1"
    environment.update(extra)
    return environment


def run(command: list[str], cwd: Path, check: bool = True, timeout: int = 900, **extra_env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env(**extra_env), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def git_init(repo: Path) -> None:
    run(["git", "init", "-q"], repo)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "add", "-A"], repo)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", "test repository"], repo)


def snakemake_plan(repo: Path, *args: str) -> set[str]:
    """Jobs a dry run would execute, as `rule` or `rule[wildcards]` (the `all` target left out), read
    from the plan column of Snakemake's `--detailed-summary`."""
    result = run(["snakemake", "--detailed-summary", *args], repo)
    rows = csv.DictReader(io.StringIO(result.stdout), delimiter="\t")
    return {job_of(row["rule"], Path(row["output_file"])) for row in rows if row["plan"] == "update pending" and row["rule"] != "all"}


def job_of(rule: str, output: Path) -> str:
    # stage_config is the one rule with a wildcard: {stage} is its output's (and benchmark's) name
    return f"stage_config[stage={output.stem}]" if rule == "stage_config" else rule


def snakemake_run(repo: Path, *args: str, check: bool = True) -> tuple[set[str], subprocess.CompletedProcess]:
    """Run `snakemake --cores all *args` in `repo`; the jobs it ran, known by the benchmark files
    Snakemake wrote for them (one per job), and the finished process."""
    before = benchmark_times(repo)
    result = run(["snakemake", "--cores", "all", *args], repo, check=check)
    return {job for job, written in benchmark_times(repo).items() if before.get(job) != written}, result


def benchmark_times(repo: Path) -> dict[str, int]:
    run_name = yaml.safe_load((repo / "config" / "config.yaml").read_text())["run"]
    root = repo / "results" / run_name / "benchmarks"
    return {
        job_of(path.parent.name if path.parent != root else path.stem, path): path.stat().st_mtime_ns
        for path in (root.rglob("*.tsv") if root.exists() else [])
    }


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items) -> None:
    """Every test under tests/integration is `integration` (`make test-integration`) unless it is marked
    `smoke`: those few stay in `make test`, with the unit tests."""
    integration = REPO / "tests" / "integration"
    for item in items:
        if Path(item.path).is_relative_to(integration) and item.get_closest_marker("smoke") is None:
            item.add_marker(pytest.mark.integration)


def pytest_sessionstart(session) -> None:
    if not hasattr(session.config, "workerinput"):  # once, in the controller (not in each xdist worker)
        subprocess.run([str(REPO / "tests" / "slurm" / "cluster.sh"), "tidy"], check=True, timeout=60)


def run_tiny_pipeline(root: Path) -> Path:
    """A git + DVC copy of the repository under `root`, after `snakemake --cores all` on the tiny config."""
    repo = copy_repo(root / "repo")
    write_config(repo, tiny_config())
    git_init(repo)
    use_dvc_remote(repo, root / "dvc-remote")
    result = run(["snakemake", "--cores", "all"], repo)
    (repo / "snakemake-run.log").write_text(result.stdout + result.stderr)
    return repo


def use_dvc_remote(repo: Path, remote: Path) -> None:
    remote.mkdir(parents=True, exist_ok=True)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], repo)


@pytest.fixture(scope="session")
def ran_repo(tmp_path_factory, worker_id) -> Path:
    """A git + DVC copy of the repository after `snakemake --cores all` on the tiny config.

    The pipeline runs once per test session: under pytest-xdist the first worker to ask runs it while
    the others wait, then each worker takes a private copy (its own DVC remote too), so no two
    workers ever write to one repository."""
    if worker_id == "master":
        return run_tiny_pipeline(tmp_path_factory.mktemp("ran"))
    shared = tmp_path_factory.getbasetemp().parent / "ran-once"
    with FileLock(f"{shared}.lock"):
        if not (shared / "finished").exists():
            shutil.rmtree(shared, ignore_errors=True)
            run_tiny_pipeline(shared)
            (shared / "finished").touch()
    root = tmp_path_factory.mktemp("ran")
    repo = root / "repo"
    shutil.copytree(shared / "repo", repo, symlinks=True)
    use_dvc_remote(repo, root / "dvc-remote")
    return repo


@pytest.fixture
def fresh_copy(ran_repo, tmp_path) -> Path:
    """A private copy of `ran_repo` (outputs, Snakemake metadata and git included) to modify."""
    target = tmp_path / "repo"
    shutil.copytree(ran_repo, target, symlinks=True)
    return target
