import pytest

from assay import AssayError, MetricSpec, get_preset, list_presets, load_metric, render
from assay.metrics import InputShape


def test_every_preset_loads_and_renders_its_fields():
    names = list_presets()
    assert {"toxicity", "prompt_injection", "context_adherence", "pii", "tool_call_correctness"} <= set(names)
    row = {"input": "IN", "output": "OUT", "output_b": "OUTB", "context": "CTX", "tools": [{"name": "f"}]}
    for name in names:
        spec = get_preset(name)
        text = render(spec, row)
        for field in spec.fields:
            marker = {"input": "IN", "output": "OUT", "output_b": "OUTB", "context": "CTX", "tools": '"name": "f"'}[field]
            assert marker in text, (name, field)
        assert "{input}" not in text and "{output}" not in text


def test_boolean_metric_has_true_false_and_positive():
    spec = get_preset("toxicity")
    assert spec.labels == ("true", "false") and spec.is_binary and spec.positive == "true"
    assert spec.verbalizer("true") == " true"


def test_categorical_verbalizers_and_positive():
    spec = get_preset("toxicity_3class")
    assert spec.labels == ("hate_speech", "offensive_language", "neither")
    assert spec.verbalizer("offensive_language") == " offensive"
    assert spec.positive == "hate_speech"


def test_load_metric_from_yaml_dict_and_preset_override(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(get_preset("pii").to_yaml())
    assert load_metric(str(path)) == get_preset("pii")
    spec = load_metric({"preset": "toxicity", "name": "toxicity_v2", "severity": "low"})
    assert spec.name == "toxicity_v2" and spec.severity == "low" and spec.prompt == get_preset("toxicity").prompt


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"name": "x", "prompt": "no placeholder"}, "placeholders"),
        ({"name": "x", "shape": "rag", "prompt": "{input} {output}"}, "{context}"),
        ({"name": "x", "output": "boolean", "labels": ["yes", "no"], "prompt": "{input}"}, "categorical"),
        ({"name": "Bad Name", "prompt": "{input}"}, "lowercase"),
        ({"name": "x", "shape": "video", "prompt": "{input}"}, "shape"),
        ({"name": "x", "output": "categorical", "labels": ["a", "a"], "prompt": "{input}"}, "repeat"),
    ],
)
def test_invalid_metrics_give_one_clear_line(data, fragment):
    with pytest.raises(AssayError) as err:
        load_metric(data)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("expected ") and "Fix:" in msg
    assert fragment in msg


def test_unknown_preset_lists_the_presets():
    with pytest.raises(AssayError, match="toxicity"):
        load_metric("no_such_metric")


def test_trace_shape_renders_messages():
    spec = MetricSpec(name="t", shape=InputShape.trace, prompt="Trace:\n{output}")
    text = render(spec, {"output": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo",
                                                                         "tool_calls": [{"name": "f"}]}]})
    assert "user: hi" in text and "assistant: yo [tool_calls]" in text


def test_truncation_keeps_the_judged_field_whole():
    spec = get_preset("context_adherence")
    answer = "the answer being judged " * 5
    row = {"input": "q " * 50, "context": "context word " * 400, "output": answer}
    text = render(spec, row, budget=200)
    assert answer.strip() in text
    assert "[...]" in text
    assert len(text.split()) <= 200 + 5  # the marker adds a token per cut field
    # nothing is cut when it fits
    small = {"input": "q", "context": "c", "output": "a"}
    assert "[...]" not in render(spec, small, budget=200)


def test_truncation_cuts_the_judged_field_only_when_it_alone_is_too_long():
    spec = get_preset("toxicity")
    text = render(spec, {"input": "word " * 1000}, budget=100)
    assert "[...]" in text and len(text.split()) <= 105


def test_keep_end_keeps_a_too_long_trajectory_s_latest_turns():
    from assay.metrics._render import keeps_end

    spec = get_preset("agent_task_success")
    assert keeps_end(spec) and not keeps_end(get_preset("toxicity"))
    turns = [{"role": "user" if i % 2 else "assistant", "content": f"turn{i} " + "filler " * 20} for i in range(60)]
    row = {"input": "book a flight", "context": "the policy " * 50, "output": turns}
    usual, latest = render(spec, row, budget=300), render(spec, row, budget=300, keep_end=True)
    # usually head 2/3 + tail 1/3 (about 4 of the 60 turns from the end); keep_end: all of it from the end
    assert "turn0 " in usual and "turn59 " in usual and "turn52 " not in usual
    assert "turn0 " not in latest and "turn59 " in latest and "turn52 " in latest and "[...]" in latest
    assert abs(len(latest.split()) - len(usual.split())) <= 2  # the same budget either way
    short = {**row, "output": turns[:2]}
    assert render(spec, short, budget=300, keep_end=True) == render(spec, short, budget=300)  # nothing to cut
