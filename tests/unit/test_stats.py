"""Bootstrap intervals and per-utterance word errors, on hand-computed cases."""

import pytest

from most.evaluate.normalize import word_error_rate
from most.evaluate.stats import bootstrap_ratio, paired_bootstrap_difference


def test_per_utterance_errors_add_up_to_the_corpus_counts():
    scored = word_error_rate(["a b c", "d e", "f"], ["a x c y", "e", "f"])
    assert scored["errors"] == [2, 1, 0]  # substitution + insertion; deletion; none
    assert scored["lengths"] == [3, 2, 1]
    assert sum(scored["errors"]) == scored["substitutions"] + scored["deletions"] + scored["insertions"]
    assert scored["wer"] == pytest.approx(3 / 6)


def test_bootstrap_interval_brackets_the_estimate_and_is_seeded():
    errors, lengths = [0, 1, 2, 3, 4, 5, 6, 7] * 10, [10] * 80
    low, high = bootstrap_ratio(errors, lengths, seed=1)
    assert low < 0.35 < high and high - low < 0.15
    assert bootstrap_ratio(errors, lengths, seed=1) == (low, high)
    assert bootstrap_ratio([3] * 20, [10] * 20, seed=0) == pytest.approx((0.3, 0.3))  # no spread, no width
    few_low, few_high = bootstrap_ratio(errors[:8], lengths[:8], seed=1)
    assert few_high - few_low > high - low  # fewer items, wider interval


def test_paired_difference_separates_a_uniformly_better_system():
    lengths = [10] * 30
    worse, better = [4 + i % 3 for i in range(30)], [2 + i % 3 for i in range(30)]
    assert paired_bootstrap_difference((worse, lengths), (better, lengths), seed=0) == pytest.approx((0.2, 0.2))
    low, high = paired_bootstrap_difference((worse, lengths), (worse, lengths), seed=0)
    assert low == high == 0
    noisy = [b + (2 if i % 2 else -2) for i, b in enumerate(better)]  # equal on average, large per-item noise
    low, high = paired_bootstrap_difference((noisy, lengths), (better, lengths), seed=0)
    assert low < 0 < high
