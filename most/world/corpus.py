"""The embedded corpus as text items, split so that no dev/test text appears in any training text."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from most.data.leakage import held_out_found_in, word_ngrams
from most.data.sources import is_spoken
from most.rng import rng_for
from most.world.facts import arithmetic_items, build_facts, sample_instruction
from most.world.grammar import sample_sentence
from most.world.lexicon import word_inventory
from most.world.pairs import english_word_check, grammatical_pair, nonword_for
from most.world.stories import Story, sample_story


@dataclass
class TextItem:
    """One item of the embedded corpus. Spoken items get a voice when synthesized."""

    id: str
    split: str  # train | dev | test | test_neural
    task: str  # see TASKS
    text: str
    response: str = ""
    answers: list[str] = field(default_factory=list)
    pair_id: str = ""
    label: str = ""  # correct | wrong, for minimal pairs; fact | arithmetic, for QA items

    @property
    def spoken(self) -> bool:
        return is_spoken(self.task)


TASKS = {
    "asr": "a sentence of the grammar (ASR), spoken by the split's voices",
    "tts": "an ASR sentence again, spoken by the one output voice (TTS targets, the vocoder, the resynthesis ceiling)",
    "spoken_qa": "a spoken question; response/answers hold the gold answer(s)",
    "spoken_instruction": "a spoken instruction; response holds the answer",
    "swuggy": "a word or a pronounceable non-word (pair_id, label)",
    "sblimp": "a grammatical or ungrammatical sentence (pair_id, label)",
    "storycloze": "a story with its true or a wrong ending (pair_id, label)",
    "text_lm": "text-LM corpus: grammar sentences, stories and fact statements",
    "text_qa": "a written question with its answer",
    "text_instruction": "a written instruction with its response",
}


class _CorpusBuilder:
    """Collects items, numbers them per (task, split), and keeps held-out text out of training."""

    def __init__(self) -> None:
        self.items: list[TextItem] = []
        self.held_out: set[str] = set()  # dev/test texts (and wrong variants) that training must not contain
        self.texts: set[str] = set()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, split: str, task: str, text: str, item_id: str | None = None, **extra) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; the embedded corpus has {sorted(TASKS)}")
        if item_id is None:
            index = self._counts.get((task, split), 0)
            self._counts[(task, split)] = index + 1
            item_id = f"{task}-{split}-{index:05d}"
        self.items.append(TextItem(item_id, split, task, text, **extra))
        self.texts.add(text)
        if split != "train" and task != "swuggy":
            self.held_out.add(text)

    def allowed_in_training(self, text: str) -> bool:
        return not (word_ngrams(text) & self.held_out)

    def unique(self, rng: random.Random, make: Callable[[random.Random], str], count: int, what: str, training: bool) -> list[str]:
        """`count` distinct new texts; training texts also contain no held-out text."""
        out: list[str] = []
        fresh: set[str] = set()
        for _ in range(50 * count + 1000):
            if len(out) == count:
                return out
            text = make(rng)
            if text in self.texts or text in fresh or (training and not self.allowed_in_training(text)):
                continue
            fresh.add(text)
            out.append(text)
            if not training:
                self.held_out.add(text)
        if len(out) < count:
            raise ValueError(f"the grammar cannot produce {count} distinct {what}; lower the configured size")
        return out


def build_texts(sizes: dict, seed: int) -> list[TextItem]:
    """All text items of the embedded corpus, deterministically from `seed`.

    `sizes` is the `download.embedded.sizes` config section. Held-out material (dev, test,
    test_neural) is drawn first; training material is drawn so that it contains none of it, and
    `check_no_leakage` verifies the result.
    """
    corpus = _CorpusBuilder()

    # held-out ASR/TTS sentences
    rng = rng_for(seed, "sentences")
    for split, key in (("dev", "dev_sentences"), ("test", "test_sentences"), ("test_neural", "test_neural_sentences")):
        for text in corpus.unique(rng, sample_sentence, sizes[key], "sentences", training=False):
            corpus.add(split, "asr", text)

    # sBLIMP-like pairs: the grammatical member is a held-out sentence as well
    rng = rng_for(seed, "sblimp")
    index = 0
    while index < sizes["sblimp_pairs"]:
        good, bad, phenomenon = grammatical_pair(rng)
        if good in corpus.texts or bad in corpus.texts:
            continue
        pair_id = f"sblimp-{phenomenon}-{index:04d}"
        corpus.add("test", "sblimp", good, f"{pair_id}-correct", pair_id=pair_id, label="correct")
        corpus.add("test", "sblimp", bad, f"{pair_id}-wrong", pair_id=pair_id, label="wrong")
        index += 1

    # StoryCloze-like pairs: held-out whole stories with their true and a wrong ending
    rng = rng_for(seed, "stories")
    test_stories: dict[str, Story] = {}
    while len(test_stories) < sizes["storycloze_pairs"]:
        story = sample_story(rng)
        test_stories.setdefault(story.text, story)
    for index, story in enumerate(test_stories.values()):
        pair_id = f"storycloze-{story.schema}-{index:04d}"
        body = " ".join(story.sentences)
        corpus.add("test", "storycloze", f"{body} {story.ending}", f"{pair_id}-correct", pair_id=pair_id, label="correct")
        corpus.add("test", "storycloze", f"{body} {story.wrong_ending}", f"{pair_id}-wrong", pair_id=pair_id, label="wrong")

    # sWUGGY-like pairs: words of the grammar vs pronounceable non-words
    rng = rng_for(seed, "swuggy")
    is_word = english_word_check()
    vocabulary = sorted(w for w in word_inventory() if len(w) >= 3 and w.isalpha())
    rng.shuffle(vocabulary)
    made = 0
    for word in vocabulary:
        if made == sizes["swuggy_pairs"]:
            break
        nonword = nonword_for(rng, word, is_word)
        if nonword is None:
            continue
        pair_id = f"swuggy-{made:04d}"
        corpus.add("test", "swuggy", word, f"{pair_id}-correct", pair_id=pair_id, label="correct")
        corpus.add("test", "swuggy", nonword, f"{pair_id}-wrong", pair_id=pair_id, label="wrong")
        made += 1
    if made < sizes["swuggy_pairs"]:
        raise ValueError(f"only {made} word/non-word pairs exist; lower download.embedded.sizes.swuggy_pairs")

    # QA: half facts, half sums in dev and test. Training asks every fact in its training
    # phrasings; dev/test ask some facts in the held-out phrasing. Sums are split by question.
    facts = build_facts(seed)
    rng = rng_for(seed, "qa")
    sums = arithmetic_items()
    rng.shuffle(sums)
    held_out_facts = list(facts)
    rng.shuffle(held_out_facts)
    n_dev, n_test = sizes["qa_dev"], sizes["qa_test"]
    fact_counts = {"dev": n_dev // 2, "test": n_test // 2}
    sum_counts = {split: count - fact_counts[split] for split, count in (("dev", n_dev), ("test", n_test))}
    if fact_counts["dev"] + fact_counts["test"] > len(facts) or sum_counts["dev"] + sum_counts["test"] >= len(sums):
        raise ValueError(f"qa_dev + qa_test: the world has {len(facts)} facts and {len(sums)} sums to ask; half of each set is facts")
    qa_splits: dict[str, list[tuple[str, list[str], str]]] = {}
    for split in ("dev", "test"):
        asked = [(f.questions()[1], f.answers(), "fact") for f in held_out_facts[: fact_counts[split]]]
        asked += [(q, a, "arithmetic") for q, a in sums[: sum_counts[split]]]
        held_out_facts, sums = held_out_facts[fact_counts[split] :], sums[sum_counts[split] :]
        rng.shuffle(asked)
        qa_splits[split] = asked
    qa_splits["train"] = [(q, f.answers(), "fact") for f in facts for q in f.questions()[0]] + [(q, a, "arithmetic") for q, a in sums]
    rng.shuffle(qa_splits["train"])
    for split, asked in qa_splits.items():
        for question, answers, kind in asked:
            corpus.add(split, "spoken_qa", question, response=answers[0], answers=list(answers), label=kind)
    for question, answers, kind in qa_splits["train"]:
        corpus.add("train", "text_qa", question, response=answers[0], answers=list(answers), label=kind)

    # held-out instructions (the sentences they quote are held out too)
    rng = rng_for(seed, "instructions")
    instruction_texts: set[str] = set()

    def instructions(count: int, training: bool) -> list[tuple[str, str]]:
        def quote() -> str:
            return corpus.unique(rng, sample_sentence, 1, "sentences", training=training)[0]

        out = []
        for _ in range(100 * count + 1000):
            if len(out) == count:
                break
            text, response = sample_instruction(rng, quote, facts)
            if text in instruction_texts or (training and not corpus.allowed_in_training(text)):
                continue
            instruction_texts.add(text)
            out.append((text, response))
        if len(out) < count:
            raise ValueError(f"cannot produce {count} distinct instructions; lower the configured size")
        return out

    for split, key in (("dev", "instruction_dev"), ("test", "instruction_test")):
        for text, response in instructions(sizes[key], training=False):
            corpus.add(split, "spoken_instruction", text, response=response)

    # training material: none of it contains a held-out text
    rng = rng_for(seed, "train-sentences")
    for text in corpus.unique(rng, sample_sentence, sizes["train_sentences"], "sentences", training=True):
        corpus.add("train", "asr", text)
    for text in corpus.unique(rng, sample_sentence, sizes["lm_sentences"], "sentences", training=True):
        corpus.add("train", "text_lm", text)
    for text, response in instructions(sizes["instruction_train"], training=True):
        corpus.add("train", "spoken_instruction", text, response=response)
    for text, response in instructions(sizes["text_instruction_train"], training=True):
        corpus.add("train", "text_instruction", text, response=response)

    rng = rng_for(seed, "train-stories")
    for text in corpus.unique(rng, lambda r: sample_story(r).text, sizes["lm_stories"], "stories", training=True):
        corpus.add("train", "text_lm", text)
    for fact in facts:
        for statement in fact.statements():
            corpus.add("train", "text_lm", statement)

    # the output voice speaks the first sentences of each split again: the speech the model learns to
    # produce (one voice, as the paper's single-speaker vocoder) and the vocoder learns to render
    for split in ("train", "dev", "test"):
        sentences = [item.text for item in corpus.items if item.task == "asr" and item.split == split]
        for text in sentences[: sizes[f"tts_{split}_sentences"]]:
            corpus.add(split, "tts", text)

    check_no_leakage(corpus.items)
    return corpus.items


def check_no_leakage(items: list[TextItem]) -> None:
    """Raise if any dev/test text occurs, as a run of whole words, inside any training text.

    Training text is every train item's text and response. sWUGGY-like items are single words of
    the vocabulary by design (they test lexical knowledge), so they are exempt.
    """
    held_out: dict[str, str] = {}
    for item in items:
        if item.split != "train" and item.task != "swuggy":
            held_out.setdefault(item.text, item.id)  # a text's first item (the output voice repeats some)
    training = [text for item in items if item.split == "train" for text in (item.text, item.response) if text]
    found = held_out_found_in(training, held_out)
    if found:
        raise ValueError(f"{len(found)} held-out texts occur in training text, e.g. {[held_out[t] for t in sorted(found)[:5]]}")
