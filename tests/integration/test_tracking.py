"""MLflow records: a parent per invocation, a child per stage, FAILED where a stage fails."""

import hashlib
import json
import re

import pytest
import yaml
from mlflow import MlflowClient

from most import tracking
from tests.conftest import TINY_RESULTS, STAGES, edit_config, run, snakemake_plan, snakemake_run


def client_for(repo):
    return MlflowClient(tracking_uri=f"sqlite:///{repo / 'results' / 'mlflow.db'}")


def runs(repo, experiment="most"):
    client = client_for(repo)
    found = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([found.experiment_id], max_results=1000) if found else [])


def children_of(all_runs, parent):
    return {r.info.run_name: r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}


def test_one_parent_run_with_one_child_per_stage(ran_repo):
    client, all_runs = runs(ran_repo)
    parents = [r for r in all_runs if r.data.tags.get("most.kind") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert re.fullmatch(r"[0-9a-f]{40}", parent.data.tags["git.commit"])
    assert parent.data.params["prepare.min_duration_s"] == "0.2"
    # MLflow's UI opens the experiment on its runs, not on its GenAI overview
    assert client.get_experiment_by_name("most").tags["mlflow.experimentKind"] == "custom_model_development"
    children = children_of(all_runs, parent)
    assert set(children) == set(STAGES)
    assert all(child.info.status == "FINISHED" for child in children.values())
    losses = client.get_metric_history(children["train_vocoder"].info.run_id, "mel_l1")
    assert [m.step for m in losses] == [20]  # the tiny config trains 20 steps, logged every 50 and at the end
    # training: loss curves per task, dev losses at intervals, expert load per modality
    posttrain = children["posttrain"].info.run_id
    assert [m.step for m in client.get_metric_history(posttrain, "loss")] == [1, 2, 3, 4, 5, 6]
    assert {m.step for m in client.get_metric_history(posttrain, "loss.asr")} <= {1, 2, 3, 4, 5, 6}  # steps with ASR examples
    assert [m.step for m in client.get_metric_history(posttrain, "dev_loss.asr")] == [3, 6]
    assert any(key.startswith("expert_entropy.audio.layer") for key in children["posttrain"].data.metrics)
    assert "reports/expert_load.png" in {a.path for a in client.list_artifacts(posttrain, "reports")}
    prepare = children["prepare"]
    assert prepare.info.status == "FINISHED"
    assert prepare.data.tags["most.stage"] == "prepare" and re.fullmatch(r"[0-9a-f]{32}", prepare.data.tags["input.download.md5"])
    assert prepare.data.tags["git.commit"] == parent.data.tags["git.commit"]
    (read,) = prepare.inputs.dataset_inputs  # what the stage read, on the run's Datasets tab
    assert read.dataset.name == "download" and read.dataset.digest == prepare.data.tags["input.download.md5"]
    assert set(prepare.data.params) == {
        f"prepare.{k}" for k in yaml.safe_load((ran_repo / "config" / "config.yaml").read_text())["prepare"]
    }
    assert prepare.data.metrics["skipped"] == 0 and prepare.data.metrics["train.utterances"] > 0
    artifacts = {a.path for folder in ("reports", "logs", "config") for a in client.list_artifacts(prepare.info.run_id, folder)}
    assert {"reports/quality_report.json", "reports/quality_report.md", "logs/prepare.log", "config/prepare.yaml"} <= artifacts
    report = json.loads(open(client.download_artifacts(prepare.info.run_id, "reports/quality_report.json")).read())
    assert report["kept"] == prepare.data.metrics["kept"]
    assert children["download"].data.params["seed"] == "1234"
    # the report's headline numbers and files on the parent run, where a user looks first
    headline = json.loads((ran_repo / TINY_RESULTS / "report.json").read_text())
    assert parent.data.metrics["asr.wer"] == pytest.approx(headline["asr"]["wer"]["value"])
    assert parent.data.metrics["audio_lm.accuracy"] == pytest.approx(headline["audio_lm"]["accuracy"]["value"])
    assert {"spoken_qa.s2t_accuracy", "spoken_qa.s2s_accuracy", "tts.wer"} <= set(parent.data.metrics)
    assert {"report/report.md", "report/report.json", "report/metrics.png"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id, "report")
    }


def test_a_failing_stage_fails_its_run_and_the_parent(fresh_copy):
    broken = fresh_copy / "broken-source"
    broken.mkdir()
    (broken / "metadata.jsonl").write_text("{this is not json}\n")
    edit_config(
        fresh_copy, lambda c: c["download"].__setitem__("local", [{"name": "broken", "path": str(broken), "split": "train", "task": "asr"}])
    )
    result = run(["snakemake", "--cores", "all"], fresh_copy, check=False)
    assert result.returncode != 0
    assert "metadata.jsonl:1: not a JSON object" in (fresh_copy / TINY_RESULTS / "logs" / "download.log").read_text()
    _, all_runs = runs(fresh_copy)
    parent = max((r for r in all_runs if r.data.tags.get("most.kind") == "pipeline"), key=lambda r: r.info.start_time)
    assert parent.info.status == "FAILED"
    children = children_of(all_runs, parent)
    assert set(children) == {"download"}  # nothing downstream ran
    assert children["download"].info.status == "FAILED"


def test_a_stage_that_raises_stops_the_pipeline_there_and_the_fixed_rerun_continues_from_it(fresh_copy):
    """A bug in one evaluation: its job and the parent run are FAILED, the report does not run, and
    after the fix the rerun runs that stage and what follows it, nothing upstream."""
    code = fresh_copy / "most" / "stages" / "eval_tts.py"
    original = code.read_text()
    code.write_text(
        original.replace("def run(cfg", 'def run(*args, **kwargs):\n    raise RuntimeError("injected bug")\n\n\ndef unused_run(cfg', 1)
    )
    _, before = runs(fresh_copy)
    result = run(["snakemake", "--cores", "1"], fresh_copy, check=False)  # one job at a time: nothing else is in flight when it fails
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Error in rule eval_tts" in output
    assert "RuntimeError: injected bug" in (fresh_copy / TINY_RESULTS / "logs" / "eval_tts.log").read_text()
    _, after = runs(fresh_copy)
    parent = max((r for r in after if r.data.tags.get("most.kind") == "pipeline"), key=lambda r: r.info.start_time)
    assert parent.info.status == "FAILED" and len(after) > len(before)
    children = children_of(after, parent)
    assert children["eval_tts"].info.status == "FAILED" and "report" not in children
    assert all(child.info.status == "FINISHED" for name, child in children.items() if name != "eval_tts")

    # the fix: the evaluations that finished with the buggy code rerun too (their code changed back)
    code.write_text(original)
    rerun = {"eval_tts", "report"} | {name for name in children if name.startswith("eval_")}
    assert snakemake_plan(fresh_copy) == rerun
    ran, _ = snakemake_run(fresh_copy)
    assert ran == rerun
    assert json.loads((fresh_copy / TINY_RESULTS / "report.json").read_text())["tts"]["wer"]["n"] > 0


def test_tracking_disabled_records_nothing(fresh_copy):
    edit_config(fresh_copy, lambda c: (c["tracking"].__setitem__("enabled", False), c["ceiling"].__setitem__("max_utterances", 1)))
    _, before = runs(fresh_copy)
    output = run(["snakemake", "--cores", "all"], fresh_copy)
    assert "rule unit_ceiling:" in output.stdout + output.stderr
    _, after = runs(fresh_copy)
    assert len(after) == len(before)


def test_a_stage_run_by_hand_is_a_standalone_run(fresh_copy, tmp_path):
    uri = f"sqlite:///{tmp_path / 'standalone.db'}"
    run(
        ["most", "prepare", "--config", "config/config.yaml", "--output", "results/by-hand/prepare", "--threads", "1"],
        fresh_copy,
        MLFLOW_TRACKING_URI=uri,
    )
    client = MlflowClient(tracking_uri=uri)
    found = client.search_runs([client.get_experiment_by_name("most").experiment_id])
    assert len(found) == 1
    assert found[0].info.run_name == "prepare" and found[0].info.status == "FINISHED"
    assert "mlflow.parentRunId" not in found[0].data.tags
    assert found[0].data.metrics["kept"] > 0


@pytest.mark.parametrize("value", ["; touch pwned", "$(touch pwned)", "`touch pwned`"])
def test_config_strings_never_reach_a_shell(fresh_copy, value):
    """A config value with shell syntax stays a literal: it is data in a YAML file, never a command."""

    def shell_syntax(config):
        config["tracking"]["experiment"] = value  # reaches jobs through the environment
        config["prepare"]["alphabet"] += value  # reaches the prepare job through its stage config

    edit_config(fresh_copy, shell_syntax)
    run(["snakemake", "--cores", "all", "prepare"], fresh_copy)  # the edited stage (what follows reads no string of it)
    assert not list(fresh_copy.rglob("pwned"))
    client, found = runs(fresh_copy, experiment=value)
    prepare = next(r for r in found if r.info.run_name == "prepare")
    assert prepare.data.params["prepare.alphabet"].endswith(value)


def test_an_experiment_made_before_the_kind_tag_gets_it_on_the_next_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    old = client.create_experiment("older")
    with tracking.stage_run("prepare", {}, {"enabled": True, "uri": uri, "experiment": "older"}, {}, None, None):
        pass
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.fixture
def standalone(tmp_path, monkeypatch):
    """Stage runs outside any pipeline (no parent from the environment), with a private lineage cache."""
    for name in (tracking.ENV_URI, tracking.ENV_PARENT, tracking.ENV_EXPERIMENT):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MOST_LINEAGE_CACHE", str(tmp_path / "lineage"))


def datasets_of(client, run_id):
    """name -> (digest, source, context) of the datasets a run lists as its inputs."""
    found = {}
    for item in client.get_run(run_id).inputs.dataset_inputs:
        context = {tag.key: tag.value for tag in item.tags}.get("mlflow.data.context")
        found[item.dataset.name] = (item.dataset.digest, json.loads(item.dataset.source), item.dataset.source_type, context)
    return found


def test_a_stage_run_lists_the_upstream_outputs_it_reads_as_its_input_datasets(tmp_path, standalone, caplog):
    outputs = tmp_path / "results" / "tiny"
    (outputs / "prepare").mkdir(parents=True)
    (outputs / "prepare" / "train.jsonl").write_text('{"id": "a", "text": "hello"}\n')
    (outputs / "units" / "tokens").mkdir(parents=True)
    (outputs / "units" / "tokens" / "train.jsonl").write_text('{"id": "a", "units": [1, 2, 3]}\n')
    (outputs / "units" / "ceiling.json").write_text('{"wer": 0.25}\n')
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = {"enabled": True, "uri": uri, "experiment": "inputs"}
    client = MlflowClient(tracking_uri=uri)

    training = {"prepare": outputs / "prepare", "tokens": outputs / "units" / "tokens", "graft": outputs / "graft"}
    with caplog.at_level("WARNING", logger="most.tracking"):
        with tracking.stage_run("posttrain", {}, settings, training, None, None) as first:
            pass
    datasets = datasets_of(client, first.run_id)
    # an input that does not exist is not listed (no digest of nothing), and the log says so
    assert set(datasets) == {"prepare", "tokens"}
    assert "input graft" in caplog.text and "does not exist" in caplog.text
    tags = client.get_run(first.run_id).data.tags
    for name in ("prepare", "tokens"):
        digest, source, source_type, context = datasets[name]
        assert digest == tags[f"input.{name}.md5"] and len(digest) == 32  # the lineage's content hash
        assert source == {"uri": str(training[name].resolve())} and source_type == "local"
        assert context == "training"
    assert "input.graft.md5" not in tags

    # the digest is the content's: the same bytes give the same digest, an edit a new one
    with tracking.stage_run("posttrain", {}, settings, training, None, None) as again:
        pass
    assert datasets_of(client, again.run_id) == datasets
    (outputs / "units" / "tokens" / "train.jsonl").write_text('{"id": "a", "units": [1, 2, 4]}\n')
    evaluation = {"ceiling": outputs / "units" / "ceiling.json", "tokens": outputs / "units" / "tokens"}
    with pytest.raises(RuntimeError), tracking.stage_run("report", {}, settings, evaluation, None, None) as failed:
        raise RuntimeError("the stage failed")
    run = client.get_run(failed.run_id)
    assert run.info.status == "FAILED"
    report = datasets_of(client, failed.run_id)
    assert report["tokens"][0] != datasets["tokens"][0] and report["tokens"][3] == "evaluation"
    assert report["ceiling"][0] == hashlib.md5(b'{"wer": 0.25}\n').hexdigest()  # a file's digest is its md5
    # the runs read back from a search list them too (what the UI's Datasets column shows)
    (searched,) = client.search_runs([run.info.experiment_id], f"attributes.run_id = '{failed.run_id}'")
    assert {item.dataset.name for item in searched.inputs.dataset_inputs} == {"ceiling", "tokens"}


def test_a_dataset_two_stages_log_at_once_is_retried_not_fatal(tmp_path, standalone, monkeypatch):
    """Two stages reading one output log the same dataset; MLflow's SQL store can then fail the later
    insert on its unique key (seen in CI: the four evaluations all read `instruct`). The stage run
    retries, finds the row the other wrote, and lists it."""
    from mlflow.exceptions import MlflowException

    (tmp_path / "instruct").mkdir()
    (tmp_path / "instruct" / "model.txt").write_text("weights\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = {"enabled": True, "uri": uri, "experiment": "race"}
    inputs = {"instruct": tmp_path / "instruct"}
    with tracking.stage_run("eval_asr", {}, settings, inputs, None, None):
        pass  # the other stage's insert, which won the race
    original, calls = MlflowClient.log_inputs, []

    def loses_the_race_once(self, run_id, datasets=None, models=None):
        calls.append(run_id)
        if len(calls) == 1:
            raise MlflowException(
                "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest"
            )
        return original(self, run_id, datasets=datasets, models=models)

    monkeypatch.setattr(MlflowClient, "log_inputs", loses_the_race_once)
    with tracking.stage_run("eval_tts", {}, settings, inputs, None, None) as tracked:
        pass
    client = MlflowClient(tracking_uri=uri)
    assert len(calls) == 2 and client.get_run(tracked.run_id).info.status == "FINISHED"
    assert [item.dataset.name for item in client.get_run(tracked.run_id).inputs.dataset_inputs] == ["instruct"]

    def always_fails(self, run_id, datasets=None, models=None):
        raise MlflowException("something else went wrong")

    monkeypatch.setattr(MlflowClient, "log_inputs", always_fails)
    with pytest.raises(MlflowException, match="something else"):  # any other error is not retried
        with tracking.stage_run("eval_tts", {}, settings, inputs, None, None):
            pass
