from pathlib import Path

import pytest

from assay import AssayError, load_config
from assay.config import config_from_dict


def test_example_config_loads_with_paths_relative_to_the_file():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "toxicity" / "config.yaml"
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


def test_every_yaml_file_is_read_by_one_reader_with_one_error_shape(tmp_path, monkeypatch):
    """Run configs, metric files, the server's provider file and $ASSAY_HOME/providers.yaml: a YAML
    error, a non-UTF-8 byte and a missing file give the same AssayError codes, naming the file."""
    import pytest

    from assay.config import load_config
    from assay.errors import AssayError
    from assay.metrics import load_metric
    from assay.providers._server import ServerProviders
    from assay.providers._settings import org_config

    broken = tmp_path / "broken.yaml"
    broken.write_text("metric: [unclosed\n")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("metric: caf\xe9\n".encode("latin-1"))
    readers = [load_config, load_metric, ServerProviders.from_file]
    for read in readers:
        for path, code in ((broken, "invalid_config"), (latin, "invalid_encoding"),
                           (tmp_path / "missing.yaml", "not_found")):
            with pytest.raises(AssayError) as exc:
                read(path)
            assert exc.value.code == code and path.name in str(exc.value), (read, path.name, str(exc.value))
    home = tmp_path / "home"
    home.mkdir()
    (home / "providers.yaml").write_text("providers: {x: [\n")
    monkeypatch.setenv("ASSAY_HOME", str(home))
    with pytest.raises(AssayError) as exc:
        org_config()
    assert exc.value.code == "invalid_config" and "providers.yaml" in str(exc.value)


def test_a_config_round_trips_through_its_dict_and_the_artifacts_yaml(tmp_path):
    """to_dict -> config_from_dict gives the same config, and the config.yaml an artifact stores loads
    back to it (every key of the example, defaults included)."""
    from pathlib import Path

    import yaml

    from assay.config import config_from_dict, load_config

    example = load_config(Path(__file__).resolve().parents[2] / "examples" / "toxicity" / "config.yaml")
    again = config_from_dict(example.to_dict(), base_dir=tmp_path)
    assert again.to_dict() == example.to_dict()
    stored = tmp_path / "config.yaml"
    stored.write_text(yaml.safe_dump(example.to_dict(), sort_keys=False, allow_unicode=True))
    assert load_config(stored).to_dict() == example.to_dict()


def test_top_level_exports_the_main_calls_documented_and_lazy():
    """`assay` exports train, Evaluator, evaluate, Monitor and Client; every public name has a
    docstring; importing `assay` loads no torch (the heavy calls load on first use)."""
    import subprocess
    import sys

    import assay

    for name in ("train", "Evaluator", "evaluate", "Monitor", "Client"):
        assert name in assay.__all__
    for name in assay.__all__:
        obj = getattr(assay, name)
        if name != "__version__":
            assert (getattr(obj, "__doc__", None) or "").strip(), f"assay.{name} has no docstring"
    import assay.train as train_package
    from assay.train import TrainResult, train as train_fn

    assert assay.train is train_package and TrainResult is train_package.TrainResult  # a plain package
    assert train_fn is train_package.train and callable(train_fn)  # `from assay.train import train`: the pipeline
    code = "import sys, assay; assay.Client; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tests_mirror_the_package():
    """Every test lives in tests/<stage>/ named after a package of assay (core: the ground floor)."""
    repo = Path(__file__).resolve().parents[2]
    packages = {p.name for p in (repo / "src" / "assay").iterdir() if (p / "__init__.py").exists()}
    tests = repo / "tests"
    assert not list(tests.glob("test_*.py")), "tests at the top level: move them into tests/<stage>/"
    folders = {p.parent.name for p in tests.glob("*/test_*.py")}
    assert folders <= packages | {"core"}, folders - packages


def test_release_heap_trims_only_past_its_slack():
    """glibc: the freed heap is given back when the resident size grew past the slack (and always with none)."""
    import sys

    from assay import _memory

    if not _memory.release_heap():  # no slack: trims, where the C library is glibc
        assert _memory._LIBC is False and not sys.platform.startswith("darwin") or sys.platform != "linux"
        return
    assert _memory.release_heap(1 << 40) is False  # nothing grew by a terabyte since
