"""DVC mirrors the workflow: generated dvc.yaml, agreement after Snakemake, identical bytes from `dvc repro`."""

import filecmp

from tests.conftest import REPO, run, snakemake_plan


def test_committed_dvc_yaml_matches_a_fresh_export(tmp_path):
    assert run(["most", "export-dvc", "--check"], REPO).returncode == 0


def test_a_stale_dvc_yaml_is_detected(fresh_copy):
    dvc_yaml = fresh_copy / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("persist: true", "persist: false", 1))
    result = run(["most", "export-dvc", "--check"], fresh_copy, check=False)
    assert result.returncode == 1 and "out of date" in result.stderr


def test_dvc_status_agrees_after_a_snakemake_run(ran_repo):
    result = run(["dvc", "status"], ran_repo)
    assert "Data and pipelines are up to date" in result.stdout, result.stdout


def test_dvc_repro_in_a_fresh_clone_gives_byte_identical_outputs(ran_repo, tmp_path):
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(ran_repo), str(clone)], tmp_path)
    assert not (clone / "dvc.lock").exists()
    run(["dvc", "repro"], clone)
    ours, theirs = ran_repo / "results" / "embedded" / "prepare", clone / "results" / "embedded" / "prepare"
    files = sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file() and p.name != ".snakemake_timestamp")
    assert any(f.parts[0] == "manifests" for f in files)
    mismatch = [str(f) for f in files if not filecmp.cmp(ours / f, theirs / f, shallow=False)]
    assert mismatch == []
    for report in ("units/ceiling.json", "graft/report.json", "base_lm/pretrain_report.json"):
        assert (ran_repo / "results" / "embedded" / report).read_bytes() == (clone / "results" / "embedded" / report).read_bytes(), report
    assert (ran_repo / "dvc.lock").read_text() == (clone / "dvc.lock").read_text()
    assert snakemake_plan(clone) == set()
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone).stdout
