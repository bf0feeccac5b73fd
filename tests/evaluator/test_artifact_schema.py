"""The artifact contract: every file name in one place (evaluator/_artifact.py), evaluator.json as a
typed, versioned EvaluatorInfo, report.json as a typed, versioned Report (report/_schema.py); the
golden v1 artifact in tests/fixtures/artifacts validates, round-trips, and scores as it did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from assay.errors import AssayError
from assay.evaluator import (ARTIFACT_FILES, FORMAT_VERSION, INFO_FILE, REPORT_FILES, REPORT_JSON, EvaluatorInfo,
                             read_info)
from assay.report import REPORT_FORMAT_VERSION, Report, summary_line

FIXTURES = Path(__file__).parents[1] / "fixtures" / "artifacts"
GOLDEN = FIXTURES / "toxicity-tfidf-v1"


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_golden_evaluator_json_validates_with_typed_access():
    info = EvaluatorInfo.from_file(GOLDEN)
    assert info.format_version == 1 <= FORMAT_VERSION
    assert info.family == "linear" and info.metric_name == "toxicity" and info.labels == ["true", "false"]
    assert info.label_list == ["true", "false"] and info.base is None and info.base_name is None
    assert info.threshold == pytest.approx(0.4585609532680688) and info.temperature == pytest.approx(0.7093828)
    assert info.max_length == 32 and info.files == ["linear.safetensors", "vocab.json"]
    assert info.data is not None and info.data.counts["held_out"] == 16 and info.data.split_seed == 0
    assert set(info.data_hashes) == {"seeds", "held_out", "train_rows", "calibration_rows"}
    assert info.calibration.objective == "f1" and info.config["metric"] == "toxicity"
    assert info.versions["python"] == "3.11.7" and info.report_summary["kappa"] == 0.5
    assert info.selection.winner == "tfidf" and info.linear.kind == "tfidf" and info.blocks == ["tfidf"]
    assert info.training.rows == 40 and info.eval_batch_size == 32
    # the file or its folder; read_info gives the same model (validated), its dict the file's object
    assert EvaluatorInfo.from_file(GOLDEN / INFO_FILE) == info
    assert read_info(GOLDEN) == info and read_info(GOLDEN).to_dict() == _json(GOLDEN / INFO_FILE)


def test_read_info_returns_the_typed_model_with_calibration_as_calibration():
    """read_info hands back EvaluatorInfo (not a dict): typed sections, Calibration for ``calibration``,
    unknown keys kept; the decision it scores with is the top-level one."""
    from assay.evaluator import Calibration
    from assay.evaluator._artifact import LinearInfo, Selection, TrainingInfo

    info = read_info(GOLDEN)
    assert isinstance(info, EvaluatorInfo) and not isinstance(info, dict)
    assert isinstance(info.calibration, Calibration) and isinstance(info.linear, LinearInfo)
    assert isinstance(info.selection, Selection) and isinstance(info.training, TrainingInfo)
    cal = info.calibration
    assert cal.method == "out-of-fold" and cal.n_rows == 40 and cal.small_sample
    assert cal.label_shift == {"true": 0.0, "false": 0.0}  # from its prior record
    # the calibration entry written back has exactly the keys read (method / small_sample were inferred)
    assert cal.to_dict() == _json(GOLDEN / INFO_FILE)["calibration"]
    used = info.scoring_calibration()
    assert used.threshold == info.threshold and used.temperature == info.temperature
    assert used.operator == ">=" and used.calibrated_threshold is None
    assert info.selection.candidates[0].params["features"] == 557 and info.training.model_extra["cv_folds"] == 3


def test_evaluator_info_round_trips_without_losing_a_key():
    raw = _json(GOLDEN / INFO_FILE)
    info = EvaluatorInfo.from_dict(raw)
    assert info.to_dict() == raw  # every key and value (JSON objects are unordered)
    assert EvaluatorInfo.from_dict(info.to_dict()).to_dict() == raw
    # unknown keys, top level and nested, are kept; no default is added to what was read
    extra = {**raw, "added_later": {"x": [1, 2]}, "data": {**raw["data"], "new_count": 3}}
    assert EvaluatorInfo.from_dict(extra).to_dict() == extra
    minimal = {"metric": raw["metric"], "family": "linear"}  # written before format_version was recorded
    assert EvaluatorInfo.from_dict(minimal).to_dict() == minimal
    assert EvaluatorInfo.from_dict(minimal).format_version == 1


def test_the_golden_report_validates_and_its_headline_is_the_summary_line():
    raw = _json(GOLDEN / REPORT_JSON)
    rep = Report.from_file(GOLDEN)
    assert rep.format_version == 1 <= REPORT_FORMAT_VERSION
    assert rep.to_dict() == raw and Report.from_dict(rep.to_dict()).to_dict() == raw
    assert rep.n == 16 and rep.n_train == 40 and rep.metric.name == "toxicity" and rep.kappa == 0.5
    assert set(rep.baselines) == {"majority", "tfidf_logreg"} and rep.baselines["tfidf_logreg"].kappa == 0.375
    assert rep.judge is None and rep.systems == {}
    assert rep.speed.best_batch_size == 1 and rep.speed.cheaper_than_judge > 1
    assert [c.name for c in rep.candidates] == ["tfidf"] and rep.selection.winner == "tfidf"
    line = rep.headline()
    assert line == summary_line(raw) == ("held-out n=16  kappa 0.50 [0.08, 0.87]  F1 0.75  AUROC 0.73  ECE 0.186"
                                         "  | majority kappa 0.00  tfidf kappa 0.38  | 259 rows/s")
    # evaluator.json's report_summary is Report.summary() of the same report
    assert rep.summary() == _json(GOLDEN / INFO_FILE)["report_summary"]


def test_the_golden_artifact_loads_and_scores_identically():
    from assay.evaluator import Evaluator
    from assay.monitor._checks import read_report, report_kappa

    want = _json(FIXTURES / "toxicity-tfidf-v1.expected.json")
    ev = Evaluator.from_pretrained(GOLDEN)
    assert ev.threshold == pytest.approx(want["threshold"])
    np.testing.assert_allclose(ev.predict_proba(want["rows"]), want["probabilities"], rtol=1e-6, atol=1e-9)
    assert [s.label for s in ev.score(want["rows"])] == want["labels"]
    assert report_kappa(read_report(GOLDEN)) == 0.5


def test_every_file_of_the_golden_artifact_has_a_declared_name():
    names = {p.name for p in GOLDEN.iterdir()}
    assert names <= set(ARTIFACT_FILES), sorted(names - set(ARTIFACT_FILES))
    assert len(set(ARTIFACT_FILES)) == len(ARTIFACT_FILES)
    assert set(REPORT_FILES.values()) <= set(ARTIFACT_FILES)
    from assay.report import FILES

    assert FILES == REPORT_FILES


def _copy(tmp_path: Path, **changes) -> Path:
    art = tmp_path / "art"
    shutil.copytree(GOLDEN, art)
    info = _json(art / INFO_FILE)
    for key, value in changes.items():
        if value is None:
            info.pop(key)
        else:
            info[key] = value
    (art / INFO_FILE).write_text(json.dumps(info))
    return art


def test_a_future_format_version_is_refused_clearly(tmp_path):
    from assay.evaluator import Evaluator

    art = _copy(tmp_path, format_version=FORMAT_VERSION + 1)
    for load in (read_info, EvaluatorInfo.from_file, Evaluator.from_pretrained):
        with pytest.raises(AssayError) as exc:
            load(art)
        e = exc.value
        assert e.code == "invalid_artifact" and f"format_version {FORMAT_VERSION + 1}" in e.found
        assert INFO_FILE in e.found and f"<= {FORMAT_VERSION}" in e.expected and "upgrade assay" in e.fix
    report = {**_json(GOLDEN / REPORT_JSON), "format_version": REPORT_FORMAT_VERSION + 1}
    with pytest.raises(AssayError, match="upgrade assay") as exc:
        Report.from_dict(report)
    assert exc.value.code == "invalid_artifact" and REPORT_JSON in exc.value.found
    (art / REPORT_JSON).write_text(json.dumps(report))
    with pytest.raises(AssayError, match=f"format_version {REPORT_FORMAT_VERSION + 1}"):
        Report.from_file(art)


@pytest.mark.parametrize("key", ["metric", "family"])
def test_a_missing_essential_key_is_invalid_artifact_naming_evaluator_json(tmp_path, key):
    art = _copy(tmp_path, **{key: None})
    with pytest.raises(AssayError) as exc:
        read_info(art)
    e = exc.value
    assert e.code == "invalid_artifact" and INFO_FILE in str(e) and key in e.expected and str(art) in e.found


def test_mistyped_keys_are_invalid_artifact(tmp_path):
    for changes, where in (({"threshold": "high"}, "threshold"), ({"metric": {"labels": ["a", "b"]}}, "metric"),
                           ({"format_version": 0}, "format_version")):
        with pytest.raises(AssayError) as exc:
            read_info(_copy(tmp_path / where, **changes))
        assert exc.value.code == "invalid_artifact" and where in exc.value.expected and INFO_FILE in str(exc.value)
    with pytest.raises(AssayError, match="student") as exc:
        Report.from_dict({"student": "none"})
    assert exc.value.code == "invalid_artifact"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / INFO_FILE).write_text("[1, 2]")
    with pytest.raises(AssayError, match="JSON object") as exc:
        read_info(tmp_path / "bad")
    assert exc.value.code == "invalid_artifact"
