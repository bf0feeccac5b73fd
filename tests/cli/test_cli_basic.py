import json

from click.testing import CliRunner

from assay.cli import cli


def test_presets_json_lists_presets():
    out = CliRunner().invoke(cli, ["presets", "--json"])
    assert out.exit_code == 0
    assert "context_adherence" in json.loads(out.output)


def test_validate_reports_split(shared_data):
    out = CliRunner().invoke(cli, ["validate", str(shared_data / "pii_presidio_synth.jsonl"), "-m", "pii", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["split"]["seeds"] + data["split"]["held_out"] == data["rows"]
    assert data["dropped_duplicates"] > 0  # that file has exact duplicates, counted not hidden


def test_bad_input_is_one_error_line_and_exit_2(shared_data):
    out = CliRunner().invoke(cli, ["validate", str(shared_data / "toxicity_davidson.jsonl"), "-m", "toxicity"])
    assert out.exit_code == 2
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: expected") and "Traceback" not in out.output


def test_json_flag_gives_the_json_error_shape(shared_data):
    out = CliRunner().invoke(cli, ["validate", str(shared_data / "toxicity_davidson.jsonl"), "-m", "toxicity", "--json"])
    assert out.exit_code == 2
    err = json.loads(out.output)["error"]
    assert err["code"] == "invalid_rows" and set(err) == {"code", "message", "expected", "found", "fix"}
