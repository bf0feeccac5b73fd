import json

import pytest

from assay import AssayError, get_preset, load_rows, split_rows
from assay.data import read_records, row_hash, to_rows, validate_rows, write_rows


def _assert_one_line(err):
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("expected ") and "Fix:" in msg
    return msg


def test_csv_jsonl_and_parquet_load_the_same_rows(tmp_path):
    rows = [{"id": str(i), "text": f"message {i}", "y": "true" if i % 2 else "false"} for i in range(10)]
    write_rows(rows, tmp_path / "d.jsonl")
    write_rows(rows, tmp_path / "d.csv")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    spec = get_preset("toxicity")
    loaded = [load_rows(tmp_path / f"d.{ext}", spec, columns={"input": "text", "label": "y"}).rows
              for ext in ("jsonl", "csv", "parquet")]
    assert loaded[0] == loaded[1] == loaded[2]
    assert [r["label"] for r in loaded[0]][:2] == ["false", "true"]


def test_label_map_and_boolean_normalisation():
    spec = get_preset("toxicity")
    rows = to_rows([{"input": "a", "label": 1}, {"input": "b", "label": "No"}, {"input": "c", "label": "toxic"}],
                   label_map={"toxic": "true"})
    assert [r["label"] for r in rows] == ["true", "false", "true"]
    assert validate_rows(rows, spec).ok


def test_unknown_label_missing_column_and_empty_file_are_clear(tmp_path):
    spec = get_preset("toxicity")
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"input": "x", "label": "maybe"}) + "\n")
    with pytest.raises(AssayError) as err:
        load_rows(path, spec)
    assert "unknown label 'maybe'" in _assert_one_line(err)

    with pytest.raises(AssayError) as err:
        load_rows(path, spec, columns={"input": "text"})
    assert "column 'text'" in _assert_one_line(err)

    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(AssayError) as err:
        load_rows(empty, spec)
    assert "empty" in _assert_one_line(err)

    header_only = tmp_path / "h.csv"
    header_only.write_text("input,label\n")
    with pytest.raises(AssayError) as err:
        load_rows(header_only, spec)
    assert "no rows" in _assert_one_line(err)


def test_bad_json_line_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"input": "a", "label": "true"}\n{oops\n')
    with pytest.raises(AssayError, match="line 2"):
        read_records(path)


def test_missing_field_for_shape_is_reported_per_row():
    spec = get_preset("context_adherence")
    rows = [{"id": "a", "input": "q", "output": "o", "context": "c", "label": "true"},
            {"id": "b", "input": "q", "output": "o", "label": "false"}]
    v = validate_rows(rows, spec)
    assert not v.ok and v.errors[0].id == "b" and v.errors[0].field == "context"
    with pytest.raises(AssayError, match="row 2"):
        v.raise_for_errors()


def test_duplicates_are_dropped_and_counted_and_conflicts_warned():
    spec = get_preset("toxicity")
    rows = [{"input": "same", "label": "true"}, {"input": "same", "label": "true"},
            {"input": "same", "label": "false"}, {"input": "other", "label": "false"}]
    v = validate_rows(rows, spec)
    assert v.dropped_duplicates == 1 and len(v.rows) == 3
    assert any("different label" in w for w in v.warnings)
    assert v.label_counts == {"true": 1, "false": 2}


def test_split_is_stratified_deterministic_and_order_free(shared_data):
    spec = get_preset("pii")
    rows = load_rows(shared_data / "pii_presidio_synth.jsonl", spec, limit=500).rows
    s1 = split_rows(rows, 0.2, seed=0)
    s2 = split_rows(list(reversed(rows)), 0.2, seed=0)
    assert s1.manifest() == s2.manifest()
    assert len(s1.seeds) + len(s1.held_out) == len(rows)
    for label in ("true", "false"):
        n = sum(r["label"] == label for r in rows)
        k = sum(r["label"] == label for r in s1.seeds)
        assert abs(k - 0.2 * n) <= 1
    assert not {row_hash(r) for r in s1.seeds} & {row_hash(r) for r in s1.held_out}
    assert split_rows(rows, 0.2, seed=1).manifest() != s1.manifest()


def test_one_reader_gives_exact_positions_deep_in_a_file_and_the_same_rows_in_chunks(tmp_path):
    """CLI and server read files with one chunked reader: a bad byte far past the first buffer is
    reported at its exact byte offset and line by both; chunking does not change the records."""
    from assay.data import iter_records, read_records
    from assay.errors import AssayError
    from assay.registry._ingest import _records

    head = "input,label\n" + "".join(f"row number {i} is fine,false\n" for i in range(20000))
    bad_at = len(head.encode()) + len("caf")
    path = tmp_path / "big.csv"
    path.write_bytes(head.encode() + b"caf\xe9 au lait,true\n" + b"last,false\n")
    for read in (lambda: read_records(path), lambda: list(_records(path, "upload.csv", "csv"))):
        with pytest.raises(AssayError) as exc:
            read()
        assert f"byte offset {bad_at}" in exc.value.found and "line 20002" in exc.value.found
        assert exc.value.code == "invalid_encoding"
    ok = tmp_path / "ok.jsonl"
    ok.write_text("\ufeff" + "".join(f'{{"input": "r{i}", "label": "true"}}\n' for i in range(23)), encoding="utf-8")
    chunks = list(iter_records(ok, chunk=5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    assert [r for c in chunks for r in c] == read_records(ok) and read_records(ok)[0]["input"] == "r0"
