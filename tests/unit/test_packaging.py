"""One pinned stack: pyproject.toml and the conda environment of the rules agree."""

import tomllib

import yaml

from tests.conftest import REPO


def test_conda_env_pins_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {d.split("==")[0].lower(): d.split("==")[1] for d in project if "==" in d}
    env = yaml.safe_load((REPO / "envs" / "most.yaml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    conda_pins = {d.split("==")[0].lower(): d.split("==")[1] for d in pip}
    assert conda_pins == pinned
    assert "python =3.11" in env["dependencies"]


def test_rules_use_the_pinned_env_and_log_and_benchmark_every_rule():
    rules = (REPO / "workflow" / "rules" / "data.smk").read_text() + (REPO / "workflow" / "rules" / "stage_config.smk").read_text()
    blocks = [b for b in rules.split("\nrule ")[1:]]
    assert len(blocks) == 3
    for block in blocks:
        assert "    log:" in block and "    benchmark:" in block
    assert rules.count("conda:\n        MOST_ENV") == 2
