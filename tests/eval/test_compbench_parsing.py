"""The rule-based prompt parser on the real T2I-CompBench validation files (read from IMAGECOT_SHARED)."""
from __future__ import annotations

import re

import pytest

from eval.t2i_compbench import rules
from eval.t2i_compbench.parsing import RuleParser, SpacyParser
from eval.t2i_compbench.prompts import load_prompts
from tests.helpers import require_shared

PARSER = RuleParser()
SIMPLE_PAIR = re.compile(r"(?:a|an) [\w-]+ [\w-]+ and (?:a|an) [\w-]+ [\w-]+")


@pytest.fixture(scope="module")
def prompt_dir():
    return require_shared("t2i_compbench")


@pytest.mark.parametrize("category", ["color", "shape", "texture"])
def test_simple_attribute_prompts_give_their_two_halves(prompt_dir, category):
    simple = [p for p in load_prompts(prompt_dir, category) if SIMPLE_PAIR.fullmatch(p)]
    assert simple, "no prompt of the simple form"
    for prompt in simple:
        assert PARSER.noun_chunks(prompt) == prompt.split(" and "), prompt


@pytest.mark.parametrize("category", ["color", "shape", "texture", "complex"])
def test_every_attribute_prompt_gives_ordered_substrings(prompt_dir, category):
    for prompt in load_prompts(prompt_dir, category):
        chunks = PARSER.noun_chunks(prompt)
        assert chunks, prompt
        pos = 0
        for chunk in chunks:  # contiguous, in order, non-overlapping
            found = prompt.find(chunk, pos)
            assert found >= 0, (prompt, chunks)
            pos = found + len(chunk)
        assert 1 <= len(rules.attribute_questions(PARSER, prompt)) <= rules.MAX_PHRASES


def test_hand_checked_sentences():
    # Expected chunks follow spaCy's noun_chunks grammar (base NPs with determiners and modifiers).
    cases = {
        "The red hat was on top of the brown coat rack.": ["The red hat", "top", "the brown coat rack"],
        "The fluffy cat is on the left of the soft pillow.": ["The fluffy cat", "the left", "the soft pillow"],
        "The smooth black river flowed next to the tall green trees.": ["The smooth black river",
                                                                       "the tall green trees"],
        "The metallic pen and fluffy notebook jot down ideas on the wooden desk.": [
            "The metallic pen", "fluffy notebook", "ideas", "the wooden desk"],
        "The white and yellow clock with a red roof reads 11:44.": ["The white and yellow clock", "a red roof"],
        "two white sheep, a black goat and a white goat in a field": ["two white sheep", "a black goat",
                                                                     "a white goat", "a field"],
        "a book on the top of a butterfly": ["a book", "the top", "a butterfly"],
    }
    for prompt, chunks in cases.items():
        assert PARSER.noun_chunks(prompt) == chunks, prompt
    # The drop-list removes "top" / "the left" but not "the top".
    assert rules.attribute_questions(PARSER, "The fluffy cat is on the left of the soft pillow.") == [
        "the fluffy cat?", "the soft pillow?"]


def test_complex_objects_and_adjective_removal():
    prompt = "The red hat was on top of the brown coat rack."
    assert rules.complex_objects(PARSER, prompt) == ("hat", "coat")  # first NOUN after: "coat" of "coat rack"
    assert rules.remove_adjectives(PARSER, prompt) == "The hat was on top of the coat rack ."
    assert rules.complex_objects(PARSER, "The black phone was resting on the brown charger.") == (None, None)


def test_simple_spatial_objects_on_the_real_file(prompt_dir):
    pattern = re.compile(r"(?:a|an) (\w+) (?:on side of|next to|near|on the left of|on the right of|"
                         r"on the bottom of|on the top of) (?:a|an) (\w+)")
    checked = 0
    for prompt in load_prompts(prompt_dir, "spatial"):
        match = pattern.fullmatch(prompt)
        if match:
            assert rules.simple_objects(PARSER, prompt) == match.groups(), prompt
            checked += 1
    assert checked


def test_numeracy_targets_on_the_real_file(prompt_dir):
    prompts = load_prompts(prompt_dir, "numeracy")
    vocab = rules.infer_objects([[t.text for t in PARSER.tokens(p)] for p in prompts])
    # Hand-checked pairs of the official new_objects.txt that the inferred vocabulary must reproduce.
    for plural, singular in {"knives": "knife", "mice": "mouse", "strawberries": "strawberry", "men": "man",
                             "people": "person", "fish": "fish", "couches": "couch", "tomatoes": "tomato"}.items():
        if plural in vocab:
            assert vocab[plural] == singular
    for prompt in prompts:
        tokens = [t.text for t in PARSER.tokens(prompt)]
        targets = rules.count_targets(tokens, vocab)
        numbers = [rules.NUMBER_WORDS[w] for w in tokens if w in rules.NUMBER_WORDS and w not in ("a", "an")]
        assert targets, prompt
        assert [c for _, c in targets if c > 1] == [n for n in numbers if n > 1], prompt


def test_spacy_parser_is_optional():
    try:
        import spacy  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install spacy"):
            SpacyParser()
        return
    pytest.skip("spaCy installed: parity with RuleParser is not asserted (model version dependent)")
