"""Reading labels out of judge answers, and per-label probabilities out of logprobs."""

from __future__ import annotations

import math

import pytest

from assay.metrics import get_preset
from assay.providers import label_probabilities, label_words, parse_label

BINARY = get_preset("toxicity")
THREE = get_preset("toxicity_3class")  # hate_speech / offensive_language / neither; verbalizers hate/offensive


@pytest.mark.parametrize("text,label", [
    ("true", "true"),
    ("TRUE", "true"),
    ("True.", "true"),
    ("  false\n", "false"),
    ("**false**", "false"),
    ("`True`", "true"),
    ("False, because the message is polite.", "false"),
    ("True. The text insults the reader.", "true"),
    ("Yes", "true"),
    ("no.", "false"),
    ('{"label": "true"}', "true"),
    ('```json\n{"label": false, "reason": "polite"}\n```', "false"),
    ("Answer: true", "true"),
    ("The answer is false.", "false"),
    ("Verdict - TRUE!", "true"),
    ("Label: **false**", "false"),
    ("The message attacks a person by name, so the label is true.", "true"),
    # unparseable: refusals, empty answers, answers that repeat the options
    ("I'm sorry, but I can't help with that.", None),
    ("", None),
    ("   ", None),
    ("true or false", None),
    ("True/False", None),
    ("It could be true, it could be false.", None),
])
def test_parse_binary(text, label):
    assert parse_label(text, BINARY) == label


@pytest.mark.parametrize("text,label", [
    ("offensive_language", "offensive_language"),
    ("Label: offensive_language because it uses a slur without targeting a group", "offensive_language"),
    ("offensive", "offensive_language"),
    ("Offensive language.", "offensive_language"),
    ("OFFENSIVE-LANGUAGE", "offensive_language"),
    ("Hate.", "hate_speech"),
    ("**hate_speech** - it targets a group", "hate_speech"),
    ("Neither — the text is fine.", "neither"),
    ('{"category": "neither"}', "neither"),
    ("The tweet uses a slur against a group. Label: hate", "hate_speech"),
    ("hate or offensive", None),
    ("The text is offensive_language, not hate speech", None),  # names two labels
    ("true", None),  # yes/no words only count for boolean metrics
    ("I refuse to classify this.", None),
])
def test_parse_categorical(text, label):
    assert parse_label(text, THREE) == label


def test_label_words_cover_verbalizers_and_yes_no():
    w = label_words(THREE)
    assert w["hate"] == "hate_speech" and w["offensive language"] == "offensive_language"
    assert w["offensive-language"] == "offensive_language" and "yes" not in w
    b = label_words(BINARY)
    assert b["yes"] == "true" and b["no"] == "false"


def test_probabilities_from_top_logprobs():
    pos = [{"**": -0.01}, {" True": math.log(0.6), "true": math.log(0.1), "False": math.log(0.2), "The": math.log(0.1)}]
    probs = label_probabilities(pos, BINARY)
    assert probs == pytest.approx({"true": 0.7 / 0.9, "false": 0.2 / 0.9})  # formatting position skipped
    # a token that is a prefix of exactly one label's words counts for it
    probs3 = label_probabilities([{"off": math.log(0.5), "hate": math.log(0.25), "ne": math.log(0.25)}], THREE)
    assert probs3 == pytest.approx({"hate_speech": 0.25, "offensive_language": 0.5, "neither": 0.25})
    assert label_probabilities(None, BINARY) is None
    assert label_probabilities([{"Sorry": -0.1}, {",": -0.1}], BINARY) is None
