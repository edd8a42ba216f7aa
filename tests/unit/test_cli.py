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


def test_upstream_stages_follow_the_inputs_transitively():
    assert stages.upstream_stages("download") == []
    assert stages.upstream_stages("unit_ceiling") == ["download", "prepare", "encode_features", "fit_units", "tokenize", "train_vocoder"]
    assert stages.upstream_stages("instruct") == [
        "download",
        "prepare",
        "encode_features",
        "fit_units",
        "tokenize",
        "pretrain_base",
        "graft",
        "posttrain",
    ]
    assert "train_vocoder" not in stages.upstream_stages("posttrain")


def test_launch_refuses_a_missing_stage(tmp_path):
    result = run(["most", "launch", "--gpus-per-node", "0", "--", "no_such_stage"], tmp_path, check=False)
    assert result.returncode == 2 and "name a stage after the options" in result.stderr


def test_a_stage_uses_at_most_its_share_of_the_cpus_it_may_run_on(monkeypatch):
    from most.cli import usable_threads

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert usable_threads(64) == 8  # a 64-CPU request on an 8-CPU allocation
    assert usable_threads(2) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # accelerate launch started four processes on this node
    assert usable_threads(64) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert usable_threads(64) == 1
