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
    from most.stages import STAGES

    rules = "".join(path.read_text() for path in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    blocks = rules.split("\nrule ")[1:]
    assert {block.split(":", 1)[0] for block in blocks} == set(STAGES) | {"stage_config"}
    for block in blocks:
        assert "    log:" in block and "    benchmark:" in block
    assert rules.count("conda:\n        MOST_ENV") == len(STAGES)
