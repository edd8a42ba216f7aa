"""Audio-LM pair sets from archives in the released layouts, built here from espeak speech (offline)."""

import csv
import hashlib
import json
import zipfile

import pytest
import soundfile

from most import config
from most.data import synth
from most.stages import download, prepare
from tests.conftest import REPO

WORDS = [("p1", "bakery", 1), ("p1", "glakery", 0), ("p2", "hides", 1), ("p2", "lides", 0)]


def speak(words: list[str], folder) -> None:
    """Each word spoken by espeak into folder/<word>.flac, then rewritten as wav (the releases use wav)."""
    jobs = [synth.SpeechJob(w, w, synth.Voice("espeak", "en-us+m3", rate=160, pitch=50), str(folder / f"{w}.flac")) for w in words]
    synth.synthesize_shard(jobs, 16000)
    for word in words:
        samples, rate = soundfile.read(folder / f"{word}.flac")
        soundfile.write(folder / f"{word}.wav", samples, rate)
        (folder / f"{word}.flac").unlink()


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """A ZeroSpeech-2021-style zip (dataset/lexical/dev: wavs + gold.csv) and a StoryCloze-style folder."""
    root = tmp_path_factory.mktemp("releases")
    lexical = root / "build" / "dataset" / "lexical" / "dev"
    lexical.mkdir(parents=True)
    speak([word for _, word, _ in WORDS], lexical)
    with open(lexical / "gold.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "id", "voice", "frequency", "word", "phones", "length", "correct"])
        for pair, word, correct in WORDS:
            writer.writerow([word, pair, "Alex", 3, word, "x", 5, correct])
    archive = root / "dataset.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted((root / "build").rglob("*")):
            handle.write(path, path.relative_to(root / "build"))
    stories = root / "storycloze" / "sSC"
    stories.mkdir(parents=True)
    speak(["s1_correct", "s1_incorrect"], stories)
    return {"archive": archive, "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(), "stories": root / "storycloze"}


def run_download(pair_sets, tmp_path):
    whole = config.load(REPO / "config" / "config.yaml")
    whole["download"]["embedded"]["enabled"] = False
    whole["download"]["pair_sets"] = pair_sets
    config.validate(whole)
    download.run(config.view(whole, "download"), {}, {"download": tmp_path / "download"}, threads=1)
    prepare.run(config.view(whole, "prepare"), {"download": tmp_path / "download"}, {"prepare": tmp_path / "prepare"}, threads=1)
    manifest = tmp_path / "prepare" / "manifests" / "test.jsonl"
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_zerospeech_and_storycloze_layouts_become_labelled_pairs(releases, tmp_path, monkeypatch):
    monkeypatch.setenv("MOST_CACHE", str(tmp_path / "cache"))
    rows = run_download(
        [
            {"name": "lexical", "task": "swuggy", "url": releases["archive"].as_uri(), "sha256": releases["sha256"], "folder": "lexical/dev",
             "text_column": "word"},
            {"name": "stories", "task": "storycloze", "url": str(releases["stories"]), "folder": "sSC", "gold": ""},
        ],
        tmp_path,
    )  # fmt: skip
    by_id = {row["id"]: row for row in rows}
    assert by_id["lexical-lexical-bakery"]["pair_id"] == "lexical-p1" and by_id["lexical-lexical-bakery"]["label"] == "correct"
    assert by_id["lexical-lexical-glakery"]["label"] == "wrong" and by_id["lexical-lexical-glakery"]["text"] == "glakery"
    assert by_id["lexical-lexical-hides"]["speaker"] == "Alex" and by_id["lexical-lexical-hides"]["task"] == "swuggy"
    stories = sorted((row["label"], row["pair_id"], row["text"]) for row in rows if row["task"] == "storycloze")
    assert stories == [("correct", "stories-s1", ""), ("wrong", "stories-s1", "")]  # no transcript needed, none invented
    report = json.loads((tmp_path / "prepare" / "quality_report.json").read_text())
    assert report["skipped_total"] == 0 and report["kept"] == 6
    assert len(list((tmp_path / "cache" / "archives").rglob("dataset.zip"))) == 1  # fetched once, kept for the next run


def test_a_wrong_checksum_or_a_broken_gold_file_is_named(releases, tmp_path, monkeypatch):
    monkeypatch.setenv("MOST_CACHE", str(tmp_path / "cache"))
    source = {"name": "lexical", "task": "swuggy", "url": str(releases["archive"]), "sha256": "0" * 64, "folder": "lexical/dev"}
    with pytest.raises(ValueError, match="sha256 .* does not match"):
        run_download([source], tmp_path)
    broken = tmp_path / "broken" / "lexical" / "dev"
    broken.mkdir(parents=True)
    (broken / "gold.csv").write_text("filename,id,voice,correct\nbakery,,Alex,1\n")
    with pytest.raises(ValueError, match=r"gold.csv: line 2 has no id"):
        run_download([{**source, "url": str(tmp_path / "broken"), "sha256": ""}], tmp_path)
    with pytest.raises(ValueError, match="no folder 'syntactic/dev'"):
        run_download([{**source, "sha256": "", "folder": "syntactic/dev"}], tmp_path)
