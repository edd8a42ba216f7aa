"""The registry of pipeline stages: what each reads, which code it runs, where its outputs go.

One place that the CLI, the Snakemake rules (through workflow/rules/common.smk) and the
dvc.yaml generator share. Importing it must stay cheap: every SLURM job re-parses the Snakefile.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from most.config import REPO_ROOT


@dataclass
class StageResult:
    """What a stage's `run` returns: metrics and report files for its MLflow run."""

    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # holds `run(cfg, inputs, outputs, threads)`
    reads: tuple[str, ...]  # top-level config sections in the stage's view
    code: tuple[str, ...]  # sub-packages and modules of most/ whose source the outputs depend on
    inputs: tuple[str, ...]  # upstream stages whose output directory this stage reads
    summary: str


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            "download",
            "most.data.download",
            ("seed", "download"),
            ("most/data", "most/io.py"),
            (),
            "fetch hub/local sources or synthesize the embedded corpus",
        ),
        Stage(
            "prepare",
            "most.data.prepare",
            ("prepare",),
            ("most/data", "most/io.py"),
            ("download",),
            "manifests per split and the quality report",
        ),
    )
}


def code_digest(stage: str) -> str:
    """sha256 over the Python sources the stage runs: a code edit there reruns the stage."""
    digest = hashlib.sha256()
    for package in STAGES[stage].code:
        root = REPO_ROOT / package
        if not root.exists():
            raise FileNotFoundError(f"stage {stage}: code path {package} does not exist")
        for path in [root] if root.is_file() else sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()[:16]


def output_dir(run: str, stage: str) -> Path:
    return Path("results") / run / stage
