"""The `most` command: one entry point per stage, clear errors for bad configs."""

import yaml

from most import stages
from tests.conftest import REPO, run


def test_help_lists_every_stage(tmp_path):
    listed = " ".join(run(["most", "--help"], tmp_path).stdout.split())
    for name, stage in stages.STAGES.items():
        assert f"{name} {stage.summary}" in listed


def test_a_wrong_type_fails_naming_the_key(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["prepare"]["max_duration_s"] = "long"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = run(["most", "prepare", "--config", "bad.yaml"], tmp_path, check=False)
    assert result.returncode == 2
    assert "prepare.max_duration_s: 'long' is not of type 'number'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_stage_view_needs_explicit_folders(tmp_path):
    (tmp_path / "view.yaml").write_text(
        yaml.safe_dump({"prepare": yaml.safe_load((REPO / "config" / "config.yaml").read_text())["prepare"]})
    )
    result = run(["most", "prepare", "--config", "view.yaml"], tmp_path, check=False)
    assert result.returncode == 2 and "pass --output and every input and output path" in result.stderr
