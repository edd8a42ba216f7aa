"""The embedded world: deterministic, split without leakage, minimal pairs that differ as designed."""

import collections

import pytest

from most.rng import rng_for
from most.world.corpus import TextItem, build_texts, check_no_leakage
from most.world.facts import QA_KINDS, build_facts
from most.world.lexicon import NAMES, POSSESSIVES, RELATIVES_FEMALE, RELATIVES_MALE, ROLES, TRANSITIVE, word_inventory
from most.world.pairs import english_word_check, grammatical_pair
from tests.conftest import tiny_config

SIZES = {k: v * 3 for k, v in tiny_config()["download"]["embedded"]["sizes"].items()}


@pytest.fixture(scope="module")
def items():
    return build_texts(SIZES, seed=7)


def test_same_seed_same_corpus_other_seed_other_corpus(items):
    assert [(i.id, i.text, i.response) for i in build_texts(SIZES, seed=7)] == [(i.id, i.text, i.response) for i in items]
    assert [i.text for i in build_texts(SIZES, seed=8)] != [i.text for i in items]


def test_sizes_per_split_and_task(items):
    counts = collections.Counter((i.split, i.task) for i in items)
    assert counts[("train", "asr")] == SIZES["train_sentences"]
    assert counts[("dev", "asr")] == SIZES["dev_sentences"]
    assert counts[("test", "asr")] == SIZES["test_sentences"]
    assert counts[("test_neural", "asr")] == SIZES["test_neural_sentences"]
    assert counts[("test", "spoken_qa")] == SIZES["qa_test"]
    assert counts[("test", "sblimp")] == 2 * SIZES["sblimp_pairs"]
    assert counts[("test", "storycloze")] == 2 * SIZES["storycloze_pairs"]
    assert counts[("test", "swuggy")] == 2 * SIZES["swuggy_pairs"]
    assert counts[("train", "text_instruction")] == SIZES["text_instruction_train"]
    assert len({i.id for i in items}) == len(items)


def test_the_output_voice_speaks_the_first_sentences_of_each_split_again(items):
    for split in ("train", "dev", "test"):
        sentences = [i.text for i in items if i.split == split and i.task == "asr"]
        again = [i.text for i in items if i.split == split and i.task == "tts"]
        assert again == sentences[: SIZES[f"tts_{split}_sentences"]] and again
    sizes = {**SIZES, "tts_train_sentences": 0}
    assert not [i for i in build_texts(sizes, seed=7) if i.split == "train" and i.task == "tts"]


def test_no_held_out_text_occurs_in_any_training_text(items):
    held_out = [i.text for i in items if i.split != "train" and i.task != "swuggy"]
    training = " | ".join(t for i in items if i.split == "train" for t in (i.text, i.response))
    assert held_out
    assert all(f" {text} " not in f" {training.replace(' | ', '  |  ')} " for text in held_out)


def test_leakage_check_catches_a_planted_leak(items):
    leaked = list(items)
    test_sentence = next(i for i in items if i.split == "test" and i.task == "asr")
    leaked.append(TextItem("planted", "train", "text_lm", f"once upon a time {test_sentence.text} and more"))
    with pytest.raises(ValueError, match=test_sentence.id):
        check_no_leakage(leaked)


def test_minimal_pairs_differ_as_designed(items):
    pairs = collections.defaultdict(dict)
    for item in items:
        if item.pair_id:
            pairs[item.pair_id][item.label] = item
    assert pairs and all(set(p) == {"correct", "wrong"} for p in pairs.values())
    is_word = english_word_check()
    for pair_id, pair in pairs.items():
        good, bad = pair["correct"].text, pair["wrong"].text
        assert good != bad
        if pair_id.startswith("swuggy"):
            assert is_word(good) and not is_word(bad)
        elif "agreement" in pair_id or "number" in pair_id:
            assert len(good.split()) == len(bad.split())  # one word changed
            assert sum(a != b for a, b in zip(good.split(), bad.split())) == 1
        elif "word_order" in pair_id:
            assert sorted(good.split()) == sorted(bad.split())
        elif pair_id.startswith("storycloze"):
            assert good.split()[:10] == bad.split()[:10]  # same story, other ending


def test_questions_have_answers_and_facts_are_stated_in_training_text(items):
    qa = [i for i in items if i.task == "spoken_qa"]
    assert all(i.answers and i.response == i.answers[0] for i in qa)
    training = {i.text for i in items if i.split == "train" and i.task == "text_lm"}
    for fact in build_facts(7):
        assert set(fact.statements()) <= training


def test_test_questions_ask_trained_facts_in_a_held_out_phrasing(items):
    facts = build_facts(7)
    held_out = {fact.questions()[1]: fact for fact in facts}
    trained = {question: fact for fact in facts for question in fact.questions()[0]}
    test = [i for i in items if i.task == "spoken_qa" and i.split == "test"]
    assert {i.label for i in test} == set(QA_KINDS)
    assert sum(i.label == "fact" for i in test) == SIZES["qa_test"] // 2
    training = collections.defaultdict(set)
    for item in items:
        if item.split == "train" and item.task in ("spoken_qa", "text_qa"):
            training[item.text].add(item.task)
            assert item.text not in held_out  # the held-out phrasing is never trained on
    for item in test:
        if item.label == "fact":
            fact = held_out[item.text]
            asked = [question for question, same in trained.items() if same == fact]
            assert len(asked) >= 2 and all(training[q] == {"spoken_qa", "text_qa"} for q in asked)  # answerable from training
            assert item.answers == fact.answers()
        else:
            assert item.text.startswith("what is ") and item.text not in training  # sums: held-out questions


def test_vocabulary_is_a_few_hundred_words():
    assert 200 <= len(word_inventory()) <= 600


def _singular_subject(words: list[str]) -> bool:
    if words[0] in ("we", "they"):
        return False
    if words[0] in NAMES:
        return len(words) == 1
    if words[0] == "the":
        return words[1] in ROLES
    return words[0] in POSSESSIVES and words[1] in RELATIVES_FEMALE + RELATIVES_MALE


def test_agreement_pairs_use_the_verb_form_the_subject_needs():
    rng = rng_for(0, "agreement")
    checked = 0
    for _ in range(300):
        good, bad, phenomenon = grammatical_pair(rng)
        if phenomenon != "agreement":
            continue
        index, good_verb, bad_verb = next((i, a, b) for i, (a, b) in enumerate(zip(good.split(), bad.split())) if a != b)
        base = good_verb if good_verb in TRANSITIVE else bad_verb
        assert {good_verb, bad_verb} == {base, TRANSITIVE[base]}
        singular = _singular_subject(good.split()[:index])
        assert good_verb == (TRANSITIVE[base] if singular else base), good
        checked += 1
    assert checked > 50
