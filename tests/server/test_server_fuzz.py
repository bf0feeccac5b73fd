"""A bounded property-based fuzz of the server's OpenAPI spec (hypothesis over /openapi.json):
every operation gets generated path parameters, query parameters and bodies (JSON from the
schema, or multipart uploads of random bytes), plus hostile values (NUL, huge integers, binary
garbage, lone UTF-16 surrogates sent as JSON escapes, JSON nested 50,000 deep, bad YAML, 3,000-column
files). No request may produce a 5xx, and every error has the standard shape."""

from __future__ import annotations

import json
import string

import pytest
from _registry_util import finished_run
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assay.server import create_app

EXAMPLES = 12  # per operation: bounded (a few seconds each on 2 shared cores)

_text = st.one_of(st.text(max_size=20), st.sampled_from(["demo", "tox", "tox-v1", "a\x00b", "../../etc/passwd",
                                                         "%00", "x" * 300, "<script>", "dataset:ds_x"]))
_int = st.one_of(st.integers(-5, 5000), st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**40]))
# JSON bodies only (a URL or a form cannot carry a lone surrogate): lone surrogates, a pair, an escaped backslash
_json_text = st.one_of(_text, st.sampled_from(["\ud800", "a\udfffb", "\ud83d\ude00", "\\ud800", "\udc00" * 3]))
_DEEP = "[" * 50_000 + "]" * 50_000


class _Raw(bytes):
    """A body sent as these bytes, not as json.dumps of a value."""


_raw_bodies = st.sampled_from([_Raw(_DEEP.encode()), _Raw(b'{"rows": [' + b'{"a": ' * 80 + b"1" + b"}" * 80 + b"]}"),
                               _Raw(b'{"name": "\\ud800", "rows": ["\\udfff"], "metrics": ["\\ud800"]}'),
                               _Raw(b'{"project": "demo", "config": {"metric": "toxicity", "base_dir": "/etc"}}')])
_wide_csv = (",".join(f"c{i}" for i in range(3000)) + "\n" + ",".join("x" * 3000) + "\n").encode()


def _from_schema(schema: dict, spec: dict, depth: int = 0, text: st.SearchStrategy = _text) -> st.SearchStrategy:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _from_schema(spec["components"]["schemas"][name], spec, depth, text)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of(*[_from_schema(s, spec, depth, text) for s in schema[key]])
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), text)
    kind = schema.get("type")
    if depth > 3:
        return st.none()
    if kind == "object":
        props = schema.get("properties") or {}
        if not props:
            return st.dictionaries(st.one_of(st.text(max_size=8), text), st.one_of(text, _int, st.booleans()),
                                   max_size=3)
        required = set(schema.get("required") or [])
        return st.fixed_dictionaries(
            {k: _from_schema(v, spec, depth + 1, text) for k, v in props.items() if k in required},
            optional={k: _from_schema(v, spec, depth + 1, text) for k, v in props.items() if k not in required})
    if kind == "array":
        return st.lists(_from_schema(schema.get("items") or {}, spec, depth + 1, text), max_size=3)
    if kind == "integer":
        return _int
    if kind == "number":
        return st.one_of(st.floats(allow_nan=False, allow_infinity=False), _int)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return text
    return st.one_of(text, _int, st.none(), st.booleans())


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory):
    from _registry_util import make_registry

    tmp = tmp_path_factory.mktemp("fuzz")
    reg = make_registry(f"sqlite:///{tmp / 'assay.db'}", tmp)
    reg.metrics.register(finished_run(reg), "tox")
    with TestClient(create_app(reg), raise_server_exceptions=False) as c:
        yield c, c.get("/openapi.json").json()
    reg.close()


def _operations() -> list[tuple[str, str]]:
    """Every (path, method) of the spec; built at collection time on a throwaway registry."""
    import tempfile
    from pathlib import Path

    from assay.registry import Registry

    with tempfile.TemporaryDirectory() as tmp:
        reg = Registry(f"sqlite:///{Path(tmp) / 'assay.db'}", str(Path(tmp) / "artifacts"))
        spec = create_app(reg, ui=False).openapi()
        reg.close()
    return [(path, method) for path, ops in spec["paths"].items() for method in ops]


@pytest.mark.slow
@pytest.mark.parametrize("path,method", _operations())
def test_no_5xx(fuzz_client, path, method):
    client, spec = fuzz_client
    op = spec["paths"][path][method]
    params = op.get("parameters", [])
    path_params = {p["name"]: st.one_of(_text.filter(lambda s: "/" not in s and s not in ("", ".", "..")),
                                        st.sampled_from(["demo", "tox", "tox-v1"]))
                   for p in params if p["in"] == "path"}
    query = {p["name"]: st.one_of(st.none(), _from_schema(p.get("schema", {}), spec), _int)
             for p in params if p["in"] == "query"}
    content = (op.get("requestBody") or {}).get("content", {})
    if "application/json" in content:
        body = st.one_of(_from_schema(content["application/json"]["schema"], spec, text=_json_text), _text, st.none(),
                         _raw_bodies)
    elif "multipart/form-data" in content:
        body = st.fixed_dictionaries({
            "file": st.tuples(st.sampled_from(["a.csv", "a.tsv", "a.jsonl", "a.json", "a.parquet", "a.txt", "\x00.csv"]),
                              st.one_of(st.binary(max_size=512), st.sampled_from([
                                  b'{"input": "hi", "label": "true"}\n', b"input,label\nhi,true\n",
                                  b"\xff\xfe\x00garbage", b"PAR1\x00\x00PAR1", _wide_csv,
                                  b'{"input": "a\\ud800", "label": "true"}\n']))),
            "metric": st.one_of(st.sampled_from(["toxicity", "{bad", '{"name": 1}', "name: x\nprompt: [\n",
                                                 "[" * 5000 + "\n"]), _text),
            "kind": st.sampled_from(["test", "train", "unlabeled", "x"]),
            "columns": st.one_of(st.none(), st.sampled_from(['{"input": "text"}', "[1]", "{nope", _DEEP,
                                                             '{"input": "\\ud800"}'])),
            "label_map": st.one_of(st.none(), st.sampled_from(['{"hate_speech": "true"}', _DEEP, '{"\\udfff": "x"}'])),
            "name": st.one_of(st.none(), _text),
        })
    else:
        body = st.none()

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(pp=st.fixed_dictionaries(path_params), q=st.fixed_dictionaries(query), b=body)
    def run(pp, q, b):
        from urllib.parse import quote

        url = path
        for k, v in pp.items():
            url = url.replace("{" + k + "}", quote(str(v), safe=""))
        qs = {k: str(v) for k, v in q.items() if v is not None}
        if isinstance(b, dict) and "file" in b and "multipart/form-data" in content:
            fields = {k: v for k, v in b.items() if k != "file" and v is not None}
            r = client.request(method.upper(), url, params=qs, data=fields, files={"file": b["file"]})
        elif "application/json" in content:
            raw = b if isinstance(b, _Raw) else json.dumps(b).encode()
            r = client.request(method.upper(), url, params=qs, content=raw,
                               headers={"content-type": "application/json"})
        else:
            r = client.request(method.upper(), url, params=qs)
        assert r.status_code < 500, (method, url, qs, b, r.text[:500])
        if r.status_code >= 400:
            assert set(r.json()) == {"error"}, r.text[:300]

    run()


def test_fuzz_covers_the_api():
    ops = _operations()
    assert len(ops) >= 20 and ("/v1/projects/{project}/datasets", "post") in ops
    assert all(set(string.ascii_lowercase) & set(m) for _, m in ops)
