"""DVC mirrors the workflow: generated dvc.yaml, agreement after Snakemake, identical bytes from `dvc repro`."""

import filecmp
import json
import re

import pytest
import yaml

from most import config
from most.stages import STAGES, default_stages, output_path, stage_inputs
from tests.conftest import TINY_RESULTS, REPO, edit_config, run, snakemake_plan, snakemake_run


@pytest.mark.smoke
def test_committed_dvc_yaml_matches_a_fresh_export(tmp_path):
    assert run(["most", "export-dvc", "--check"], REPO).returncode == 0


@pytest.mark.smoke
def test_the_rules_read_and_write_what_the_registry_says(ran_repo):
    """dvc.yaml is exported from the stage registry: Snakemake's own record of the finished run (its
    detailed summary, which lists a job's inputs once its outputs exist) must hold the same stages,
    each reading and writing the registry's paths."""
    summary = run(["snakemake", "--detailed-summary"], ran_repo).stdout.splitlines()
    header = summary[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in summary[1:] if line.count("\t") >= len(header) - 1]
    cfg = config.load(ran_repo / "config" / "config.yaml")
    views = f"results/{cfg['run']}/config/"
    planned: dict[str, dict[str, set]] = {}
    for row in rows:
        job = planned.setdefault(row["rule"], {"outputs": set(), "inputs": set()})
        job["outputs"].add(row["output_file"])
        job["inputs"] |= {path for path in row["input-file(s)"].split(",") if path not in ("", "-") and not path.startswith(views)}
    stages = default_stages(cfg)
    assert sorted(set(planned) & set(STAGES)) == sorted(stages)
    for stage in stages:
        want_outputs = {str(output_path(cfg["run"], name)) for name in STAGES[stage].outputs}
        want_inputs = {str(output_path(cfg["run"], name)) for name in stage_inputs(stage, cfg)}
        assert planned[stage] == {"outputs": want_outputs, "inputs": want_inputs}, stage


def test_a_stale_dvc_yaml_is_detected(fresh_copy):
    dvc_yaml = fresh_copy / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("persist: true", "persist: false", 1))
    result = run(["most", "export-dvc", "--check"], fresh_copy, check=False)
    assert result.returncode == 1 and "out of date" in result.stderr


@pytest.mark.smoke
def test_dvc_status_agrees_after_a_snakemake_run(ran_repo):
    result = run(["dvc", "status", "dvc.yaml"], ran_repo)
    assert "Data and pipelines are up to date" in result.stdout, result.stdout
    # the ablations, a target Snakemake runs only when named, are a DVC pipeline of their own: not run
    # yet, on the default pipeline's outputs (what `snakemake ablations` reads)
    ablations = "pipelines/ablations/dvc.yaml:ablations"
    assert list(json.loads(run(["dvc", "status", "--json"], ran_repo).stdout)) == [ablations]
    edges = re.findall(r'^"([\w/.:]+)" -> "([\w/.:]+)";$', run(["dvc", "dag", "--dot", ablations], ran_repo).stdout, re.MULTILINE)
    assert {a for a, b in edges if b == ablations} == {"prepare", "encode_features", "fit_units", "tokenize", "graft"}
    stage = yaml.safe_load((ran_repo / "pipelines" / "ablations" / "dvc.yaml").read_text())["stages"]["ablations"]
    assert stage["cmd"] == "snakemake --cores all ablations" and stage["wdir"] == "../.."


def test_dvc_metrics_and_plots_read_the_report_and_training_curves_and_diff_revisions(fresh_copy):
    results = fresh_copy / TINY_RESULTS
    report = json.loads((results / "report.json").read_text())
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], fresh_copy).stdout)[""]["data"]  # "": the workspace
    assert shown[f"{TINY_RESULTS}/report.json"]["data"]["asr"]["wer"]["value"] == report["asr"]["wer"]["value"]
    assert shown[f"{TINY_RESULTS}/posttrain/summary.json"]["data"]["dev_asr_wer"] == report["training"]["posttrain"]["dev_asr_wer"]
    plots = json.loads(run(["dvc", "plots", "show", "--json"], fresh_copy).stdout)
    assert "errors" not in plots, plots.get("errors")
    points = plots["data"]["training loss"][0]["content"]["data"]["values"]
    for stage in ("posttrain", "instruct"):
        steps = [point["step"] for point in points if point["filename"] == f"{stage}/loss_curve.json"]
        assert steps == list(range(1, len(json.loads((results / stage / "history.json").read_text())) + 1)) and steps, stage
    # another revision's metrics come from DVC's cache: none differ until the workspace changes
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "add", "dvc.lock"], fresh_copy)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", "a run"], fresh_copy)
    assert json.loads(run(["dvc", "metrics", "diff", "HEAD", "--json"], fresh_copy).stdout) == {}
    committed = report["asr"]["wer"]["value"]
    report["asr"]["wer"]["value"] = 2.5
    (results / "report.json").write_text(json.dumps(report))
    changed = json.loads(run(["dvc", "metrics", "diff", "HEAD", "--json"], fresh_copy).stdout)
    assert list(changed) == [f"{TINY_RESULTS}/report.json"] and list(changed[f"{TINY_RESULTS}/report.json"]) == ["asr.wer.value"]
    assert changed[f"{TINY_RESULTS}/report.json"]["asr.wer.value"] == {"old": committed, "new": 2.5, "diff": 2.5 - committed}


def locked(repo, stages):
    return {stage: entry for stage, entry in yaml.safe_load((repo / "dvc.lock").read_text())["stages"].items() if stage in stages}


def test_dvc_repro_in_a_fresh_clone_gives_byte_identical_outputs(ran_repo, tmp_path):
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(ran_repo), str(clone)], tmp_path)
    assert not (clone / "dvc.lock").exists()
    run(["dvc", "repro"], clone)
    ours, theirs = ran_repo / TINY_RESULTS / "prepare", clone / TINY_RESULTS / "prepare"
    files = sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file() and p.name != ".snakemake_timestamp")
    assert any(f.parts[0] == "manifests" for f in files)
    mismatch = [str(f) for f in files if not filecmp.cmp(ours / f, theirs / f, shallow=False)]
    assert mismatch == []
    for report in ("units/ceiling.json", "graft/report.json", "base_lm/pretrain_report.json", "instruct/model/model.safetensors"):
        assert (ran_repo / TINY_RESULTS / report).read_bytes() == (clone / TINY_RESULTS / report).read_bytes(), report
    # training summaries carry wall time (seconds, tokens/s); every other number is reproduced
    for stage in ("posttrain", "instruct"):
        ours, theirs = (json.loads((repo / TINY_RESULTS / stage / "summary.json").read_text()) for repo in (ran_repo, clone))
        timing = ("seconds", "tokens_per_second")
        assert {k: v for k, v in ours.items() if k not in timing} == {k: v for k, v in theirs.items() if k not in timing}
    # every number of the report (its provenance and the stage times aside)
    ours, theirs = (json.loads((repo / TINY_RESULTS / "report.json").read_text()) for repo in (ran_repo, clone))
    assert {k: ours[k] for k in ("asr", "tts", "audio_lm", "spoken_qa")} == {k: theirs[k] for k in ("asr", "tts", "audio_lm", "spoken_qa")}
    untimed = ("download", "prepare", "encode_features", "fit_units", "tokenize", "train_vocoder", "unit_ceiling", "pretrain_base", "graft")
    assert locked(ran_repo, untimed) == locked(clone, untimed)
    assert snakemake_plan(clone) == set()
    assert "Data and pipelines are up to date" in run(["dvc", "status", "dvc.yaml"], clone).stdout


def test_outputs_dvc_already_cached_keep_their_modification_times(fresh_copy):
    """A rerun that reproduces bytes DVC cached before (here the ceiling, then the report): the commit
    links the output to the older cache object; its time must stay the new one, or Snakemake reruns."""
    ceiling = fresh_copy / TINY_RESULTS / "units" / "ceiling.json"
    before = ceiling.read_bytes()
    ran, _ = snakemake_run(fresh_copy, "--forcerun", "unit_ceiling")
    assert ran == {"unit_ceiling", "report"} and ceiling.read_bytes() == before
    report = fresh_copy / TINY_RESULTS / "report.json"
    assert report.stat().st_mtime_ns >= ceiling.stat().st_mtime_ns
    assert snakemake_plan(fresh_copy) == set()
    assert "Data and pipelines are up to date" in run(["dvc", "status", "dvc.yaml"], fresh_copy).stdout


def test_a_pushed_run_pulled_into_a_fresh_clone_is_up_to_date_and_still_reruns_one_stage(fresh_copy, tmp_path):
    """The owner of a run commits dvc.lock and pushes; a collaborator clones and runs `make pull`."""
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    run([*git, "add", "dvc.lock"], fresh_copy)
    run([*git, "commit", "-qm", "the run's dvc.lock"], fresh_copy)
    run(["dvc", "push"], fresh_copy)
    remote = run(["dvc", "remote", "list"], fresh_copy).stdout.split()[1]
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(fresh_copy), str(clone)], tmp_path)
    run(["dvc", "remote", "modify", "--local", "local", "url", remote], clone)
    (clone / ".venv").symlink_to(REPO / ".venv")  # this checkout's venv, never reinstalled (-o): not what this test is about
    run(["make", "-o", ".venv/.installed", "pull"], clone)
    assert "Data and pipelines are up to date" in run(["dvc", "status", "dvc.yaml"], clone).stdout
    assert snakemake_plan(clone) == set()
    report = f"{TINY_RESULTS}/report.json"
    assert (clone / report).read_bytes() == (fresh_copy / report).read_bytes()
    # Snakemake knows the pulled run: one evaluation setting reruns the evaluations only
    edit_config(clone, lambda c: c["evaluate"].__setitem__("tts_top_k", 5))
    evaluations = {"eval_asr", "eval_tts", "eval_audio_lm", "eval_spoken_qa", "report"}
    assert snakemake_plan(clone) == evaluations | {f"stage_config[stage={stage}]" for stage in evaluations}
