"""Vocoders: output lengths follow the durations; weights round-trip through safetensors."""

import numpy as np
import pytest
import torch

from most.speech import vocoder


def small_unit_mel():
    torch.manual_seed(0)
    config = vocoder.UnitMelConfig(
        k=32,
        speakers=["a", "b"],
        hidden_size=16,
        encoder_layers=2,
        decoder_layers=2,
        mel_mean=[0.0] * 80,
        mel_std=[1.0] * 80,
        speaker_f0=[20, 40],
    )
    return vocoder.UnitMelVocoder(config)


def test_unit_mel_length_follows_given_and_predicted_durations():
    model = small_unit_mel()
    units, durations = [3, 7, 1, 30], [2, 1, 5, 3]
    mel = model.synthesize_mel(units, "a", durations)
    assert mel.shape == (sum(durations) * model.config.frames_per_unit, 80)
    predicted = (
        torch.exp(model.duration(model.encode(torch.tensor([units]), torch.ones(1, 4), torch.tensor([0])))[0, :, 0]).round().clamp(min=1)
    )
    assert model.synthesize_mel(units, "a").shape[0] == int(predicted.sum()) * model.config.frames_per_unit
    assert model.synthesize_mel([], "a").shape == (0, 80)
    with pytest.raises(ValueError, match="vocoder.speaker: 'c' is not a training speaker"):
        model.synthesize_mel(units, "c")


def test_voiced_frames_get_the_predicted_contour_or_the_speakers_median_and_unvoiced_frames_none():
    model = small_unit_mel()
    seen = []
    decode = model.decode
    model.decode = lambda frames, f0, mask: seen.append(f0) or decode(frames, f0, mask)
    with torch.no_grad():
        model.f0_head.weight.zero_()
        model.f0_head.bias.fill_(-5.0)
        model.f0_head.bias[7] = 5.0  # every frame voiced, the predictor's bin 7
    units, durations = [3, 7, 1], [2, 1, 2]
    model.synthesize_mel(units, "b", durations, f0="predicted")
    model.synthesize_mel(units, "b", durations, f0="median")
    assert seen[0].unique().tolist() == [7] and seen[1].unique().tolist() == [40]  # speaker b's median bin
    with torch.no_grad():
        model.f0_head.bias[0] = 10.0  # now every frame unvoiced
    model.synthesize_mel(units, "b", durations, f0="predicted")
    assert seen[2].unique().tolist() == [0]
    with pytest.raises(ValueError, match="voice.f0"):
        model.synthesize_mel(units, "b", durations, f0="flat")


def test_the_decoder_hears_the_same_planted_contour_in_training_and_in_synthesis():
    from most.speech.vocoder_training import loss_terms, make_batch

    model = small_unit_mel()
    seen = []
    decode = model.decode
    model.decode = lambda frames, f0, mask: seen.append(f0[0]) or decode(frames, f0, mask)
    units, durations = [3, 7, 1], [2, 1, 2]
    frames = sum(durations) * model.config.frames_per_unit
    contour = torch.tensor([0, 0, 12, 13, 14, 15, 15, 15, 16, 0, 0, 30, 31, 31, 30, 29, 28, 0, 0, 0])
    assert len(contour) == frames
    # training: the contour is the utterance's true F0, fed to the decoder (teacher forcing)
    example = (units, durations, torch.zeros(frames, 80), contour, "a")
    loss_terms(model, make_batch([example], 32, model.config.frames_per_unit, torch.zeros(80), torch.ones(80), {"a": 0}))
    # synthesis: the F0 predictor (planted to predict the contour) gives it to the decoder
    planted = torch.nn.functional.one_hot(contour, vocoder.F0_BINS).float()[None] * 20
    model.f0_logits = lambda frames, mask: planted
    model.synthesize_mel(units, "a", durations, f0="predicted")
    assert torch.equal(seen[0], contour) and torch.equal(seen[1], contour)


def test_the_mel_delta_loss_scores_the_spectrums_shape_inside_the_utterance_not_its_level():
    from most.speech.vocoder_training import loss_terms, make_batch

    model = small_unit_mel().eval()
    per_unit = model.config.frames_per_unit
    examples = [([3, 7, 1], [2, 1, 2], "a"), ([5, 2], [1, 1], "b")]  # 20 and 8 frames: the second is padded
    batch = make_batch(
        [(u, d, torch.zeros(sum(d) * per_unit, 80), torch.zeros(sum(d) * per_unit, dtype=torch.long), s) for u, d, s in examples],
        32,
        per_unit,
        torch.zeros(80),
        torch.ones(80),
        {"a": 0, "b": 1},
    )
    with torch.no_grad():
        encoded = model.encode(batch["units"], batch["unit_mask"], batch["speakers"])
        frames = model.regulate(encoded, batch["index"], batch["position"], batch["frame_mask"], batch["speakers"])
        predicted = model.decode(frames, batch["f0"], batch["frame_mask"])
        # the prediction shifted by a constant: wrong level, right shape; the padded frames hold garbage
        batch["mel"] = predicted + 0.5 + 100.0 * (1 - batch["frame_mask"])[..., None]
        shifted = loss_terms(model, batch, mel_delta_weight=2.0)
        assert torch.isclose(shifted["mel_l1"], torch.tensor(0.5))
        assert shifted["mel_delta_bins"] < 1e-6 and shifted["mel_delta_frames"] < 1e-6
        assert set(loss_terms(model, batch)) == {"mel_l1", "duration_mse", "f0_ce"}  # weight 0: the L1 on the mel alone
        # a target of another shape: both terms grow, in proportion to the weight
        batch["mel"] = batch["mel"] + torch.randn(batch["mel"].shape, generator=torch.Generator().manual_seed(0))
        once, twice = loss_terms(model, batch, 1.0), loss_terms(model, batch, 2.0)
        for term in ("mel_delta_bins", "mel_delta_frames"):
            assert once[term] > 0.5 and torch.isclose(twice[term], 2 * once[term])


def test_griffin_lim_gives_a_waveform_of_the_mel_length():
    model = small_unit_mel()
    mel = model.synthesize_mel([1, 2, 3], "b", [3, 3, 3])
    wave = vocoder.MelSettings().griffin_lim(mel, iterations=4)
    assert abs(len(wave) - (len(mel) - 1) * 160) <= 160 and np.isfinite(wave).all()


def test_run_positions():
    index, position = vocoder.run_positions([2, 3, 1])
    assert index.tolist() == [0, 0, 1, 1, 1, 2] and position.tolist() == [0, 1, 0, 1, 2, 0]


def test_f0_of_a_pure_tone_and_of_silence():
    t = np.arange(16000) / 16000
    bins = vocoder.f0_bins((0.5 * np.sin(2 * np.pi * 150 * t)).astype(np.float32))
    scaled = (np.log(150) - np.log(vocoder.F0_MIN)) / (np.log(vocoder.F0_MAX) - np.log(vocoder.F0_MIN))
    assert abs(int(bins[50]) - (round(scaled * (vocoder.F0_BINS - 2)) + 1)) <= 1
    assert int(vocoder.f0_bins(np.zeros(16000, np.float32)).max()) == 0


@pytest.mark.parametrize("kind", ["unit_mel", "hifigan"])
def test_weights_round_trip_through_safetensors(tmp_path, kind):
    torch.manual_seed(1)
    model = small_unit_mel() if kind == "unit_mel" else vocoder.UnitHifiGan(vocoder.HifiGanConfig(k=40, upsample_initial_channel=32))
    vocoder.save(model, tmp_path)
    assert not list(tmp_path.glob("*.pt")) and (tmp_path / vocoder.WEIGHTS).exists()
    loaded = vocoder.load(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_hifigan_output_length_follows_durations():
    torch.manual_seed(2)
    model = vocoder.UnitHifiGan(vocoder.HifiGanConfig(k=40, upsample_initial_channel=32))
    wave = model.synthesize([1, 5, 9], [2, 1, 3])
    assert len(wave) == 6 * 640 and np.abs(wave).max() <= 1
    predicted = model.synthesize([1, 5, 9])
    assert len(predicted) % 640 == 0 and len(predicted) >= 3 * 640


@pytest.mark.parametrize("steps", [1, 2, 20, 800])
def test_learning_rate_warms_up_then_decays_for_any_step_count(steps):
    from most.speech.vocoder_training import learning_rate_factor

    factor = learning_rate_factor(steps, "cosine")
    values = [factor(step) for step in range(steps)]
    assert all(0 < value <= 1 for value in values[: max(1, steps - 1)])
    assert max(values) == 1
    peak = values.index(1)
    assert values[peak:] == sorted(values[peak:], reverse=True)
    if steps > 2:
        assert values[-1] < 0.01
    if steps >= 40:  # warmup is 5% of the steps
        assert values[0] < 0.1
    constant = learning_rate_factor(steps, "constant")
    assert [constant(step) for step in range(peak, steps)] == [1.0] * (steps - peak)
    assert [constant(step) for step in range(peak)] == values[:peak]


def test_an_unknown_schedule_is_refused_by_its_key():
    from most.speech.vocoder_training import learning_rate_factor

    with pytest.raises(ValueError, match="vocoder.schedule"):
        learning_rate_factor(10, "linear")
