"""The ablation table's statistics: means over seeds, intervals over seeds and items, differences
paired by seed and item, and words that claim no more than the intervals support."""

import numpy as np
import pytest

from most.evaluate.ablations import check_settings, compare, markdown
from most.evaluate.stats import bootstrap_over_seeds_and_items

SETTINGS = {"baseline": "mamoe", "seeds": [1, 2, 3], "variants": {"mamoe": {"routing": "official"}, "plain_moe": {"routing": "plain"}}}


def record(errors, words, pairs, seed):
    return {
        "variant": {},
        "seed": seed,
        "steps": 10,
        "seconds": 1.0,
        "start_text_perplexity": 12.0,
        "active_expert_width": 384,
        "asr_wer": sum(errors) / sum(words),
        "asr_loss": 2.0,
        "tts_loss": 3.0,
        # the losses: the same on every utterance, so no variant differs from another in them
        "per_utterance": {
            "asr_wer": [errors, words],
            "asr_loss": [[2.0] * len(words), [1] * len(words)],
            "tts_loss": [[6.0] * len(words), [2] * len(words)],
        },
        "audio_lm_pairs": pairs,
        "audio_lm_accuracy": sum(pairs.values()) / len(pairs),
        "dev_loss_end": {"asr": 1.0 + seed, "tts": 2.0},
        "history": [],
    }


def test_identical_runs_differ_by_exactly_zero_and_a_uniform_shift_is_beyond_the_interval():
    rng = np.random.default_rng(0)
    words = rng.integers(3, 12, size=(3, 40))
    errors = rng.binomial(words, 0.4)
    assert bootstrap_over_seeds_and_items((errors, words), 1, baseline=(errors, words)) == (0.0, 0.0)
    low, high = bootstrap_over_seeds_and_items((errors + 1, words), 1, baseline=(errors, words))
    assert 0 < low <= high  # one more error on every utterance of every seed
    interval = bootstrap_over_seeds_and_items((errors, words), 1)
    assert interval[0] < (errors.sum(1) / words.sum(1)).mean() < interval[1]


def test_the_interval_widens_with_variation_between_seeds_that_items_alone_do_not_show():
    words = np.full((3, 50), 10)
    items = np.random.default_rng(1).binomial(10, 0.3, size=50)
    same = np.stack([items, items, items])
    spread = np.stack([items, np.minimum(items + 3, 10), np.maximum(items - 3, 0)])  # seeds disagree
    width = [np.subtract(*bootstrap_over_seeds_and_items((e, words), 5)[::-1]) for e in (same, spread)]
    assert width[1] > 1.5 * width[0]


def test_runs_of_different_shapes_are_refused_with_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        bootstrap_over_seeds_and_items((np.ones((2, 3)), np.ones((2, 3))), 0, baseline=(np.ones((3, 3)), np.ones((3, 3))))


def test_the_table_means_over_seeds_pairs_with_the_baseline_and_says_only_what_intervals_support():
    words = [10] * 30
    pairs = {f"p{i}": 1.0 for i in range(20)}
    records = {}
    for seed in SETTINGS["seeds"]:
        records["mamoe", seed] = record([3] * 30, words, pairs, seed)
        # plain MoE: two more errors per utterance; audio-LM identical
        records["plain_moe", seed] = record([5] * 30, words, dict(pairs), seed)
    baseline_last = {**SETTINGS, "variants": dict(reversed(SETTINGS["variants"].items()))}
    table = compare(records, baseline_last)
    assert list(table["variants"]) == ["mamoe", "plain_moe"]  # the baseline leads the table
    plain = table["variants"]["plain_moe"]
    assert plain["asr_wer"] == pytest.approx(0.5) and plain["asr_wer_per_seed"] == pytest.approx([0.5] * 3)
    assert plain["asr_wer_minus_baseline"] == pytest.approx(0.2) and plain["asr_wer_minus_baseline_ci"] == pytest.approx((0.2, 0.2))
    assert plain["audio_lm_accuracy_minus_baseline_ci"] == (0.0, 0.0) and plain["dev_loss_end"]["asr"] == pytest.approx(3.0)
    assert plain["tts_loss"] == pytest.approx(3.0) and plain["tts_loss_minus_baseline_ci"] == (0.0, 0.0)
    same = "the interval includes 0, so these runs do not separate the two."
    assert table["findings"] == [
        "`plain_moe` − `mamoe` test ASR WER +0.200 (95% CI +0.200 to +0.200): beyond its interval, so `plain_moe` is worse than `mamoe` here.",
        f"`plain_moe` − `mamoe` test ASR loss +0.000 (95% CI +0.000 to +0.000): {same}",
        f"`plain_moe` − `mamoe` test TTS loss +0.000 (95% CI +0.000 to +0.000): {same}",
        f"`plain_moe` − `mamoe` audio-LM accuracy +0.000 (95% CI +0.000 to +0.000): {same}",
    ]
    text = markdown(table)
    assert (
        "| plain_moe | routing=plain | 12.00 | 384 | 0.500 (0.500–0.500); Δ +0.200 (+0.200, +0.200) | 2.000 (2.000–2.000); Δ +0.000" in text
    )
    assert "| mamoe | routing=official | 12.00 | 384 | 0.300 (0.300–0.300) | 2.000 (2.000–2.000) |" in text
    assert "10 steps, 3 training seeds (1, 2, 3)" in text and table["findings"][0] in text


def test_audio_lm_pairs_are_compared_on_the_pairs_every_run_scored():
    words = [10] * 5
    records = {}
    for seed in SETTINGS["seeds"]:
        records["mamoe", seed] = record([1] * 5, words, {"a": 1.0, "b": 0.0, "c": 1.0}, seed)
        records["plain_moe", seed] = record([1] * 5, words, {"a": 0.0, "b": 0.0}, seed)  # c missing a side
    table = compare(records, SETTINGS)
    assert table["variants"]["plain_moe"]["audio_lm_pair_count"] == 2
    assert table["variants"]["plain_moe"]["audio_lm_accuracy_minus_baseline"] == pytest.approx(-0.5)


def test_settings_that_cannot_run_are_refused_naming_the_key():
    with pytest.raises(ValueError, match="ablations.seeds"):
        check_settings({**SETTINGS, "seeds": [1, 1]}, {"base": "embedded"})
    with pytest.raises(ValueError, match="ablations.baseline"):
        check_settings({**SETTINGS, "baseline": "dense"}, {"base": "embedded"})
    hub = {**SETTINGS, "variants": {**SETTINGS["variants"], "no_shared": {"base_lm": {"num_shared_experts": 0}}}}
    with pytest.raises(ValueError, match="ablations.variants.no_shared.base_lm"):
        check_settings(hub, {"base": "deepseek-ai/DeepSeek-V2-Lite"})
    check_settings(hub, {"base": "embedded"})
