import pytest

from assay import AssayError, load_config
from assay.config import config_from_dict


def test_example_config_loads_with_paths_relative_to_the_file():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "toxicity" / "config.yaml"
    cfg = load_config(path)
    assert cfg.metric_spec().name == "toxicity_3class"
    assert cfg.path(cfg.data.test_set).exists() and cfg.path(cfg.data.train_set).exists()
    assert cfg.model.base_name == "minilm"


def test_defaults_fill_every_knob():
    cfg = config_from_dict({"metric": "toxicity", "data": {"test_set": "t.jsonl"}})
    assert cfg.data.seed_fraction == 0.2 and cfg.model.family == "encoder" and cfg.model.lora.r == 8
    assert cfg.train.batch_size > 0 and cfg.model.max_length > 0
    assert cfg.output_dir().name == "toxicity"


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"metric": "toxicity"}, "data"),
        ({"metric": "toxicity", "data": {"test_set": "t"}, "trian": {}}, "unknown key 'trian'"),
        ({"metric": "toxicity", "data": {"test_set": "t", "seed_fraction": 1.5}}, "seed_fraction"),
        ({"metric": "nope", "data": {"test_set": "t"}}, "preset"),
    ],
)
def test_config_errors_are_one_line(data, fragment):
    with pytest.raises(AssayError) as err:
        config_from_dict(data)
    assert "\n" not in str(err.value) and fragment in str(err.value)


def test_bad_yaml_is_reported(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("metric: [unclosed\n")
    with pytest.raises(AssayError, match="YAML"):
        load_config(p)
