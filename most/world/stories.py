"""Short stories (text LM) and their StoryCloze-like wrong endings."""

from __future__ import annotations

import random
from dataclasses import dataclass

from most.world.lexicon import COLOURS, NAMES, NAMES_FEMALE, pick


@dataclass(frozen=True)
class StorySchema:
    name: str
    body: tuple[tuple[str, ...], ...]  # alternatives per sentence; {p}=name {P}=pronoun {X}=possessive
    ending: tuple[str, ...]


STORY_SCHEMAS = (
    StorySchema(
        "hungry",
        (
            ("{p} was hungry", "{p} wanted something to eat"),
            ("{P} went to the {bakery}", "{P} walked to the {bakery}"),
            ("{P} bought some bread", "{P} paid for a loaf of bread"),
        ),
        ("{P} ate the bread", "{P} ate the warm bread"),
    ),
    StorySchema(
        "cold",
        (
            ("{p} was cold", "{p} felt cold in the wind"),
            ("{P} went back home", "{P} ran back to {X} house"),
            ("{P} found {X} {colour} coat", "{P} took {X} {colour} coat from the chair"),
        ),
        ("{P} put on the coat", "{P} put on the warm coat"),
    ),
    StorySchema(
        "tired",
        (
            ("{p} was very tired", "{p} had worked all day"),
            ("{P} went to {X} room", "{P} climbed the stairs to {X} room"),
            ("{P} lay down on the bed", "{P} turned off the lamp"),
        ),
        ("{P} fell asleep", "{P} slept until the morning"),
    ),
    StorySchema(
        "thirsty",
        (
            ("{p} was thirsty", "{p} wanted a drink"),
            ("{P} took a {colour} cup", "{P} found a clean cup in the kitchen"),
            ("{P} filled the cup with water", "{P} poured cold water into the cup"),
        ),
        ("{P} drank the water", "{P} drank all the water"),
    ),
    StorySchema(
        "dirty",
        (
            ("{p}'s hands were dirty", "{p} had played in the mud"),
            ("{P} went to the kitchen", "{P} walked to the sink"),
            ("{P} turned on the water", "{P} took the soap"),
        ),
        ("{P} washed {X} hands", "{P} washed {X} hands with soap"),
    ),
    StorySchema(
        "rain",
        (
            ("{p} was walking in the {park}", "{p} was at the {park}"),
            ("dark clouds came over the sky", "it started to rain"),
            ("{P} opened {X} {colour} umbrella", "{P} held {X} umbrella over {X} head"),
        ),
        ("{P} stayed dry", "{P} did not get wet"),
    ),
    StorySchema(
        "lost",
        (
            ("{p} lost {X} {colour} ball", "{p} could not find {X} {colour} ball"),
            ("{P} looked in the garden", "{P} searched the whole house"),
            ("at last {P} found it under the bed", "at last {P} saw it behind the door"),
        ),
        ("{P} was happy again", "{P} smiled and played with the ball"),
    ),
    StorySchema(
        "birthday",
        (
            ("it was {p}'s birthday", "{p} had a birthday party"),
            ("{X} friends came to the house", "many friends came to visit {p}"),
            ("they brought a big cake", "{X} mother made a big cake"),
        ),
        ("everyone sang a song for {p}", "they all sang happy birthday to {p}"),
    ),
    StorySchema(
        "market",
        (
            ("{p} needed some apples", "{p} wanted to buy apples"),
            ("{P} went to the market", "{P} walked to the farmer at the market"),
            ("{P} paid the farmer", "{P} gave the farmer some money"),
        ),
        ("{P} carried the apples home", "{P} took the apples home in a bag"),
    ),
    StorySchema(
        "gift",
        (
            ("{p} had a {colour} kite", "{p} owned a {colour} kite"),
            ("{P} gave the kite to {q}", "{P} wanted {q} to have the kite"),
            ("{q} said thank you", "{q} was very happy"),
        ),
        ("now {q} has a {colour} kite", "now the {colour} kite belongs to {q}"),
    ),
)


@dataclass(frozen=True)
class Story:
    schema: str
    sentences: tuple[str, ...]  # the body, without the ending
    ending: str
    wrong_ending: str  # the ending of another schema, told about the same person

    @property
    def text(self) -> str:
        return " ".join(self.sentences + (self.ending,))


def sample_story(rng: random.Random) -> Story:
    schema = pick(rng, STORY_SCHEMAS)
    other = pick(rng, tuple(s for s in STORY_SCHEMAS if s is not schema))
    name = pick(rng, NAMES)
    female = name in NAMES_FEMALE
    fill = {
        "p": name,
        "P": "she" if female else "he",
        "X": "her" if female else "his",
        "q": pick(rng, tuple(n for n in NAMES if n != name)),
        "colour": pick(rng, COLOURS),
        "bakery": pick(rng, ("bakery", "shop", "market")),
        "park": pick(rng, ("park", "garden", "forest", "village")),
    }
    body = tuple(pick(rng, alternatives).format(**fill) for alternatives in schema.body)
    ending = pick(rng, schema.ending).format(**fill)
    wrong = pick(rng, other.ending).format(**fill)
    if schema.name == "gift" and rng.random() < 0.5:
        # entity tracking: the gift's colour changed
        other_colour = pick(rng, tuple(c for c in COLOURS if c != fill["colour"]))
        wrong = ending.replace(fill["colour"], other_colour)
    return Story(schema.name, body, ending, wrong)
