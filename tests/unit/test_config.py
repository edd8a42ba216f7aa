"""The config contract: one schema, complete files, errors that name the key."""

import copy
import re

import pytest
import yaml

from most import config, stages
from tests.conftest import REPO


def schema_key_paths(node: dict, prefix: str = "", leaves_only: bool = False) -> set[str]:
    """Key paths of the schema (list items as `[]`, maps keyed by stage or task names as `<stage>` / `<task>`)."""
    schema = yaml.safe_load(config.SCHEMA_PATH.read_text())
    definitions = schema["$defs"]

    def walk(node, prefix):
        if "$ref" in node:
            node = {**definitions[node["$ref"].split("/")[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
        paths = set()
        for key, child in node.get("properties", {}).items():
            path = f"{prefix}{key}"
            below = walk(child, f"{path}.")
            if not (leaves_only and below):
                paths.add(path)
            paths |= below
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            paths |= walk(node["items"], f"{prefix[:-1]}[].")
        if isinstance(node.get("additionalProperties"), dict) and "propertyNames" in node and "enum" in node["propertyNames"]:
            names = node["propertyNames"]["enum"]
            paths |= walk(node["additionalProperties"], f"{prefix}{'<stage>' if 'download' in names else '<task>'}.")
        return paths

    return walk(node or schema, prefix)


def value_paths(data, prefix="") -> set[str]:
    paths = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if isinstance(value, dict) and key not in ("mix", "splits", "columns", "variants"):  # named per config
            paths |= value_paths(value, f"{path}.")
    return paths


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    loaded = config.load(REPO / "config" / name)
    assert loaded["run"] == ("embedded" if name == "config.yaml" else "paper")


def test_both_configs_write_out_the_same_keys():
    embedded = value_paths(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    paper = value_paths(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))
    assert embedded == paper


def test_embedded_config_writes_out_every_schema_key():
    """DVC reads the raw file: a key left to a schema default would be invisible to it."""
    written = value_paths(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    expected = {p for p in schema_key_paths(None) if "[]" not in p and "<" not in p}
    assert expected - written == set()


def test_every_schema_key_is_documented_in_the_config_readme():
    readme = (REPO / "config" / "README.md").read_text()
    documented = set(re.findall(r"`([a-z0-9_<>\[\].]+)`", readme))
    missing = sorted(p for p in schema_key_paths(None, leaves_only=True) if p not in documented)
    assert missing == []


def test_paper_config_has_the_paper_layout():
    paper = config.load(REPO / "config" / "paper.yaml")
    assert paper["model"]["base"] == "deepseek-ai/DeepSeek-V2-Lite"
    assert (paper["model"]["routing"], paper["model"]["expert_assignment"]) == ("official", "index")
    # the paper's stage-1 ratios, plus the speech continuation the audio-LM evaluation scores (docs/fidelity.md)
    mix = paper["posttrain"]["mix"]
    assert {task: mix[task] for task in ("asr", "tts", "text_lm")} == {"asr": 0.4, "tts": 0.4, "text_lm": 0.2}
    assert set(mix) == {"asr", "tts", "text_lm", "speech_lm"} and paper["evaluate"]["audio_lm_task"] in mix
    per_step = {stage: paper[stage]["tokens_per_batch"] * paper[stage]["gradient_accumulation"] for stage in ("posttrain", "instruct")}
    assert (paper["posttrain"]["steps"], per_step["posttrain"]) == (500000, 512 * 2048)
    assert paper["instruct"]["mix"] == {"spoken_instruction": 0.4, "text_instruction": 0.4, "asr": 0.1, "tts": 0.1}
    assert (paper["instruct"]["steps"], per_step["instruct"]) == (10000, 128 * 2048)
    assert {s["name"] for s in paper["download"]["hub"]} >= {"librispeech", "voxpopuli", "common_voice"}
    assert paper["resources"]["posttrain"]["nodes"] > 1 and paper["resources"]["posttrain"]["gpus"] > 0


def embedded():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["prepare"].__setitem__("min_duration_s", "short"), r"prepare\.min_duration_s: 'short' is not of type 'number'"),
        (
            lambda c: c["download"]["embedded"]["sizes"].__setitem__("train_sentences", 1.5),
            r"download\.embedded\.sizes\.train_sentences: 1\.5 is not of type 'integer'",
        ),
        (lambda c: c["prepare"].__setitem__("min_duraton_s", 1.0), r"prepare: .*'min_duraton_s'.*\(unknown key\)"),
        (lambda c: c["resources"]["download"].pop("mem_mb"), r"resources\.download: 'mem_mb' is a required property"),
        (
            lambda c: c["download"]["synthesis"]["voices"]["train"].__setitem__(0, 3),
            r"download\.synthesis\.voices\.train\[0\]: 3 is not of type 'string'",
        ),
        (
            lambda c: c["download"]["synthesis"]["voices"]["test"].append("en-us+m1"),
            r"download\.synthesis\.voices\.test: \['en-us\+m1'\] also speak train/dev data",
        ),
        (
            lambda c: c["download"]["synthesis"]["output_voice"].__setitem__("name", "en-us+m5"),
            r"download\.synthesis\.output_voice\.name: 'en-us\+m5' is a dev/test voice",
        ),
        (lambda c: c["base_lm"].__setitem__("num_experts_per_token", 9), r"base_lm\.num_experts_per_token must fit in half"),
        (lambda c: c["model"].__setitem__("routing", "soft"), r"model\.routing: 'soft' is not one of"),
        (lambda c: c.__setitem__("run", "a b"), r"run: 'a b' does not match"),
    ],
)
def test_bad_values_are_reported_with_their_key_path(edit, expected):
    bad = embedded()
    edit(bad)
    with pytest.raises(config.ConfigError, match=expected):
        config.validate(bad, source="test.yaml")


def test_stage_views_hold_only_the_sections_a_stage_reads(tmp_path):
    whole = config.load(REPO / "config" / "config.yaml")
    for name, stage in stages.STAGES.items():
        view = config.view(whole, name)
        assert set(view) == set(stage.reads)
        path = tmp_path / f"{name}.yaml"
        config.write_view(view, path)
        reloaded, full = config.load_for_stage(path, name)
        assert reloaded == view and full is None
    wrong = copy.deepcopy(config.view(whole, "prepare"))
    wrong["prepare"]["sample_rate"] = "high"
    config.write_view(wrong, tmp_path / "bad.yaml")
    with pytest.raises(config.ConfigError, match=r"prepare\.sample_rate"):
        config.load_for_stage(tmp_path / "bad.yaml", "prepare")


def test_code_digest_changes_with_the_stage_code(tmp_path, monkeypatch):
    package = tmp_path / "most" / "data"
    package.mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (tmp_path / "most" / "io.py").write_text("y = 1\n")
    (tmp_path / "most" / "rng.py").write_text("z = 1\n")
    (tmp_path / "most" / "stages").mkdir()
    (tmp_path / "most" / "stages" / "prepare.py").write_text("def run(): pass\n")
    monkeypatch.setattr(stages, "REPO_ROOT", tmp_path)
    before = stages.code_digest("prepare")
    (package / "a.py").write_text("x = 2\n")
    after_package_edit = stages.code_digest("prepare")
    assert after_package_edit != before
    (tmp_path / "most" / "io.py").write_text("y = 2\n")
    after_module_edit = stages.code_digest("prepare")
    assert after_module_edit != after_package_edit
    (tmp_path / "most" / "stages" / "prepare.py").write_text("def run(): return None\n")
    assert stages.code_digest("prepare") != after_module_edit  # the stage's own module counts too
    (tmp_path / "most" / "io.py").unlink()
    with pytest.raises(FileNotFoundError, match="most/io.py"):
        stages.code_digest("prepare")
