"""The evaluation's scoring rules on hand-computed cases: normaliser, WER/CER, pair scoring,
answer matching, macro-averaged intervals, the allowed-token mask and the report's contract."""

import math

import pytest
import torch

from most.evaluate.audio_lm import accuracy, pair_scores
from most.evaluate.generate import AllowedTokens
from most.evaluate.normalize import chance_word_error_rate, character_error_rate, normalize, word_error_rate
from most.evaluate.spoken_qa import by_kind, contains_answer, exact_match, scored
from most.evaluate.stats import bootstrap_macro_mean, chance_pairing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("What is 7 plus 4?", "what is 7 +4"),  # Whisper writes "plus four" as "+4", on both sides alike
        ("what is seven plus four", "what is 7 +4"),
        ("Twenty-one apples, and one hundred and five pears.", "21 apples and 105 pears"),
        ("The grey colour of my neighbour's favourite hat", "the gray color of my neighbor is favorite hat"),
        ("Anna's ball isn't red [laughs]", "anna is ball is not red"),
        ("Um, uh, I mean (pause) hmm okay", "i mean okay"),
        ("It costs $5 and ten cents", "it costs $5.10"),
        ("Mr. Smith and Dr. Jones", "mister smith and doctor jones"),
        ("theatre centre organise", "theater center organize"),
        ("Café naïve", "cafe naive"),
        ("  ", ""),
    ],
)
def test_normalizer_matches_whispers_english_normalizer(text, expected):
    assert normalize(text) == expected


def test_wer_hand_computed():
    scored_ = word_error_rate(["a b c", "d e"], ["a x c y", ""])
    # "a b c" -> "a x c y": 1 substitution + 1 insertion; "d e" -> "": 2 deletions
    assert scored_["errors"] == [2, 2] and scored_["lengths"] == [3, 2]
    assert (scored_["substitutions"], scored_["deletions"], scored_["insertions"]) == (1, 2, 1)
    assert scored_["wer"] == pytest.approx(4 / 5)
    assert scored_["utterance_mean"] == pytest.approx((2 / 3 + 1) / 2)


def test_the_chance_baseline_scores_each_output_against_the_next_items_reference():
    references = ["red ball", "the big dog runs", "cat", "go home now"]
    perfect = list(references)
    scored_ = word_error_rate(references, perfect)
    chance = chance_word_error_rate(references, perfect, scored_, seed=0)
    # "red ball" vs "the big dog runs": 2 subs + 2 dels; "the big dog runs" vs "cat": 1 sub + 3 ins;
    # "cat" vs "go home now": 1 sub + 2 dels; "go home now" vs "red ball": 2 subs + 1 ins
    assert scored_["wer"] == 0 and chance["wer_chance"] == pytest.approx((4 + 4 + 3 + 3) / (4 + 1 + 3 + 2))
    assert chance["chance_minus_wer_ci"][0] > 0  # every resample: chance above a perfect WER
    assert chance_pairing([1, 2, 3]) == [2, 3, 1] and chance_pairing([]) == []


def test_wer_with_empty_references():
    scored_ = word_error_rate(["", "a b", "uh"], ["x y", "a b", ""])  # "uh" normalises to nothing
    assert scored_["errors"] == [2, 0, 0] and scored_["lengths"] == [0, 2, 0]
    assert scored_["wer"] == pytest.approx(1.0)  # the two inserted words over two reference words
    assert scored_["insertions"] == 2 and scored_["empty_references"] == 2
    assert scored_["utterance_mean"] == 0.0  # undefined for empty references: left out
    assert word_error_rate(["", "a"], ["", "a"])["wer"] == 0.0
    with pytest.raises(ValueError, match="no non-empty reference"):
        word_error_rate(["", "[noise]"], ["a", "b"])
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_error_rate(["a", "b"], ["a"])


def test_wer_normalizes_both_sides():
    scored_ = word_error_rate(["what is seven plus four", "the grey cat"], ["What is 7 plus 4?", "the gray hat"])
    assert scored_["wer"] == pytest.approx(1 / 7) and scored_["words"] == 7


def test_cer_counts_characters_and_spaces():
    assert character_error_rate(["ab cd"], ["ab xd"])["cer"] == pytest.approx(1 / 5)
    assert character_error_rate(["ab cd"], ["abcd"])["cer"] == pytest.approx(1 / 5)  # the space deleted
    assert character_error_rate(["ab"], [""])["cer"] == 1.0


def test_pair_scoring_on_planted_log_likelihoods():
    items = [
        {"pair_id": "p1", "label": "correct", "score": -1.0, "speaker": "a"},
        {"pair_id": "p1", "label": "wrong", "score": -2.0, "speaker": "a"},  # right: 1
        {"pair_id": "p1", "label": "correct", "score": -3.0, "speaker": "b"},
        {"pair_id": "p1", "label": "wrong", "score": -2.0, "speaker": "b"},  # wrong: 0 -> p1 averages 0.5 over voices
        {"pair_id": "p2", "label": "correct", "score": -5.0, "speaker": "a"},
        {"pair_id": "p2", "label": "wrong", "score": -5.0, "speaker": "a"},  # tie: 0.5
        {"pair_id": "p3", "label": "correct", "score": -0.1, "speaker": "a"},
        {"pair_id": "p3", "label": "wrong", "score": -9.0, "speaker": "a"},  # right: 1
        {"pair_id": "p4", "label": "correct", "score": -0.1, "speaker": "a"},  # its other side is missing: left out
    ]
    scores = pair_scores(items)
    assert scores == {"p1": 0.5, "p2": 0.5, "p3": 1.0}
    result = accuracy(scores, seed=0)
    assert result["accuracy"] == pytest.approx(2 / 3) and result["pairs"] == 3
    assert result["ci"][0] <= 2 / 3 <= result["ci"][1]
    with pytest.raises(ValueError, match="label 'maybe'"):
        pair_scores([{"pair_id": "p", "label": "maybe", "score": 0.0}])


def test_answer_containment_and_exact_match():
    assert contains_answer("The answer is twelve.", ["twelve"])
    assert contains_answer("it is 12", ["twelve"])  # numbers normalised on both sides
    assert contains_answer("she lives in the city", ["in the city", "the city", "city"])
    assert not contains_answer("a cityscape", ["city"])  # whole words only
    assert not contains_answer("", ["city"]) and not contains_answer("anything", [""])
    assert exact_match("Twelve!", ["12"]) and not exact_match("it is twelve", ["twelve"])
    assert not exact_match("", [""])
    result = scored(["twelve", "in the city", "no idea", "it is 7"], [["12"], ["the city"], ["ten"], ["seven"]], seed=0)
    assert result["accuracy"] == 0.75 and result["exact_match"] == 0.25 and result["questions"] == 4


def test_answers_are_scored_per_kind_of_question_with_and_without_speech():
    rows = [{"label": "fact"}, {"label": "arithmetic"}, {"label": "fact"}, {"label": ""}]
    result = by_kind(rows, ["red", "nine", "blue", "x"], ["red", "ten", "red", "x"], [["red"], ["nine"], ["red"], ["x"]], seed=0)
    assert sorted(result) == ["all", "arithmetic", "fact"]
    assert result["fact"]["s2t"]["accuracy"] == 0.5 and result["fact"]["t2t"]["accuracy"] == 1.0
    assert result["arithmetic"]["s2t"]["accuracy"] == 1.0 and result["arithmetic"]["t2t"]["accuracy"] == 0.0
    assert "t2t" not in by_kind(rows, ["red"] * 4, None, [["red"]] * 4, seed=0)["fact"]


def tiny_checkpoint(templates: dict):
    """A random tiny MoST with 16 unit tokens, loaded as the evaluations load a checkpoint."""
    from most.evaluate.generate import Checkpoint
    from most.model import MoSTForCausalLM, layout
    from most.model.base_lm import train_tokenizer
    from most.train.tasks import Formatter
    from tests.unit.test_model import tiny_config

    tokenizer = train_tokenizer(["the cook finds some cups", "red kite"] * 5, 200)
    token_layout = layout.extend_tokenizer(tokenizer, 16)
    config = tiny_config(
        vocab_size=len(tokenizer),
        audio_token_start=token_layout["audio_token_start"],
        audio_token_count=16,
        audio_marker_ids=token_layout["audio_marker_ids"],
        speech_frame_id=token_layout["speech_frame_id"],
    )
    torch.manual_seed(0)
    model = MoSTForCausalLM(config).eval()
    return Checkpoint(model, tokenizer, Formatter.for_model(tokenizer, templates, config))


def test_units_generated_in_left_padded_batches_are_the_units_generated_one_by_one():
    checkpoint = tiny_checkpoint({"tts": {"prompt": "{tag}{text}", "response": "{speech}"}})
    rows = [{"text": text} for text in ("the cook", "red kite finds some cups", "cups", "the red cook finds the kite")]
    alone = checkpoint.generate_units("tts", rows, max_new_tokens=12, temperature=1.0, top_k=0, seed=0, batch_size=1)
    batched = checkpoint.generate_units("tts", rows, max_new_tokens=12, temperature=1.0, top_k=0, seed=0, batch_size=3)
    assert batched == alone and all(1 <= len(units) <= 12 for units in alone)
    assert all(0 <= unit < checkpoint.unit_count for units in alone for unit in units)
    # sampled: seeded per batch, so a rerun gives the same units
    sampled = [checkpoint.generate_units("tts", rows, 12, temperature=1.0, top_k=5, seed=3, batch_size=3) for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_text_generated_in_left_padded_batches_is_the_text_generated_one_by_one():
    checkpoint = tiny_checkpoint({"asr": {"prompt": "{tag}{speech}", "response": "{text}"}})
    rows = [{"units": units} for units in ([1, 5, 2], [7, 7, 3, 9, 12, 4, 4, 0], [15], [2, 8, 8, 1, 6])]
    alone = checkpoint.generate_text("asr", rows, max_new_tokens=10, batch_size=1)
    batched = checkpoint.generate_text("asr", rows, max_new_tokens=10, batch_size=3)
    assert batched == alone and any(alone) and len(set(alone)) > 1  # not one empty answer for every row


def test_audio_lm_likelihoods_can_cover_unit_tokens_only():
    checkpoint = tiny_checkpoint({"speech_lm": {"prompt": "{tag}", "response": "{speech}"}})
    rows = [{"id": "a", "units": [1, 5, 2]}, {"id": "b", "units": [7, 7, 3, 9]}]
    everything = checkpoint.log_likelihoods("speech_lm", rows)
    units = checkpoint.log_likelihoods("speech_lm", rows, units_only=True)
    assert [count for _, count in everything] == [3 + 3, 4 + 3]  # units + begin/end of speech + EOS
    assert [count for _, count in units] == [3, 4]
    assert all(unit_score > full_score for (unit_score, _), (full_score, _) in zip(units, everything))  # fewer terms, each <= 0


def test_macro_mean_interval():
    assert bootstrap_macro_mean([[1.0] * 5, [0.0] * 9], seed=0) == pytest.approx((0.5, 0.5))
    low, high = bootstrap_macro_mean([[0.0, 1.0] * 10, [1.0] * 4], seed=0)
    assert low < 0.75 < high


def test_allowed_tokens_mask_everything_else():
    scores = torch.arange(6, dtype=torch.float).repeat(2, 1)
    masked = AllowedTokens([1, 3])(torch.zeros(2, 1, dtype=torch.long), scores)
    assert masked[0, 1] == 1 and masked[0, 3] == 3
    assert all(math.isinf(float(masked[0, i])) for i in (0, 2, 4, 5))


def test_word_by_word_gives_each_word_and_ends_it_where_the_model_ends_it():
    from most.evaluate.generate import WordByWord

    units, end, pad = range(20, 30), 31, 0

    def speaker(max_units, max_units_per_word):
        words = [[[5], [6, 7], [8]]]  # one row of three words; the second is two ids
        choose = WordByWord(words, units, end, pad, 1.0, 0, max_units, max_units_per_word, torch.Generator())

        def step(favoured):  # the model's preference this step; greedy (top_k 0)
            scores = torch.zeros(1, 40)
            scores[0, favoured] = 5.0
            forced = choose(None, scores)
            assert int(torch.isfinite(forced).sum()) == 1  # one choice, handed to greedy decoding
            return int(forced[0].argmax())

        return step

    step = speaker(max_units=10, max_units_per_word=2)
    # word 1 is given whatever the model prefers; a unit; a text token ends the word and word 2 is given in its place;
    # two units fill word 2 (the cap), so word 3 follows; after its two units, end-of-speech, then padding
    said = [step(favoured) for favoured in (21, 22, 9, 23, 24, 25, 26, 23, 23, 24, 24)]
    assert said == [5, 22, 6, 7, 24, 25, 8, 23, 23, end, pad]
    step = speaker(max_units=10, max_units_per_word=0)
    # end-of-speech before the last word ends only the word; a response with no unit yet cannot end: at the
    # last word end-of-speech and text are out, and the likeliest unit (all tie here: the first) is said
    assert [step(favoured) for favoured in (21, end, 22, 9, end, 21, end)] == [5, 6, 7, 8, 20, 21, end]
    step = speaker(max_units=1, max_units_per_word=0)
    assert [step(favoured) for favoured in (21, 22, 23)] == [5, 22, end]  # the response's unit limit ends it


def test_worded_units_generated_in_left_padded_batches_are_the_units_generated_one_by_one():
    checkpoint = tiny_checkpoint({"tts": {"prompt": "{tag}{text}", "response": "{speech_with_words}"}})
    rows = [{"text": text} for text in ("the cook", "red kite finds some cups", "cups", "the red cook finds the kite")]
    alone = checkpoint.generate_units("tts", rows, 12, temperature=1.0, top_k=0, seed=0, batch_size=1, max_units_per_word=3)
    batched = checkpoint.generate_units("tts", rows, 12, temperature=1.0, top_k=0, seed=0, batch_size=3, max_units_per_word=3)
    assert batched == alone
    assert all(1 <= len(units) <= min(12, 3 * len(row["text"].split())) for units, row in zip(alone, rows))
    assert all(0 <= unit < checkpoint.unit_count for units in alone for unit in units)
    sampled = [checkpoint.generate_units("tts", rows, 12, 1.0, 5, seed=3, batch_size=3, max_units_per_word=3) for _ in range(2)]
    assert sampled[0] == sampled[1]
