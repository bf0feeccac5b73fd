"""POST /v1/guard: one row, several registered metrics, a block / flag / allow policy."""

from __future__ import annotations

import pytest
from _registry_util import error_of as _err
from _registry_util import finished_run, make_registry
from fastapi.testclient import TestClient

from assay.client import Client, ClientError
from assay.server import create_app
from assay.testing import MockEvaluator

TOXIC, MILD, BORDER, BENIGN = "you are an idiot", "you are rude", "meh whatever", "have a nice day"
KEYWORDS = {"idiot": 0.95, "rude": 0.8, "meh": 0.55}


def _mock(reg, name: str, **kw) -> None:
    """Swap the registered version's evaluator for one with known probabilities (P(toxic))."""
    v = reg.metrics.get(name)
    reg.metrics.evaluator(v)  # loaded (and its artifact verified) the normal way first
    reg.metrics._evaluators[v.full_name] = MockEvaluator("toxicity", threshold=v.threshold, keywords=KEYWORDS,
                                                         default=0.05, **kw)


@pytest.fixture
def reg(registry_db, tmp_path):
    r = make_registry(registry_db, tmp_path)
    r.metrics.register(finished_run(r), "tox", threshold=0.5)
    _mock(r, "tox")
    yield r
    r.close()


@pytest.fixture
def api(reg):
    with TestClient(create_app(reg, batch_wait_ms=5), raise_server_exceptions=False) as c:
        yield c


def _guard(api, row, metrics=("tox",), policy=None, headers=None):
    body = {"metrics": list(metrics), "input": row}
    if policy is not None:
        body["policy"] = policy
    return api.post("/v1/guard", json=body, headers=headers or {})


def test_default_policy_blocks_toxic_allows_benign(api):
    r = _guard(api, {"input": TOXIC})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] == "block" and body["latency_ms"] >= 0
    (v,) = body["verdicts"]
    assert v["metric"] == "tox-v1" and v["label"] == "true" and v["action"] == "block" and v["rule"] == "rules[0]"
    assert v["uncertain"] is False and v["confidence"] == pytest.approx(0.95)
    assert set(v["probabilities"]) == {"true", "false"}
    ok = _guard(api, BENIGN).json()  # a bare string is the row's input
    assert ok["decision"] == "allow" and ok["verdicts"][0]["rule"] == "no rule matched"
    assert api.post("/v1/guard", json={"metrics": ["tox"], "row": {"input": TOXIC}}).json()["decision"] == "block"


def test_min_confidence_flags_below_it(api):
    policy = {"tox": [{"label": "true", "min_confidence": 0.9, "action": "block"},
                      {"label": "true", "action": "flag"}]}
    mild = _guard(api, MILD, policy=policy).json()
    assert mild["decision"] == "flag" and mild["verdicts"][0]["rule"] == "rules[1]"
    assert _guard(api, TOXIC, policy=policy).json()["decision"] == "block"
    assert _guard(api, BENIGN, policy={"default": policy["tox"]}).json()["decision"] == "allow"


def test_uncertain(api, reg):
    r = _guard(api, BORDER).json()  # 0.55: within the monitor's 0.3-0.7 band around threshold 0.5
    assert r["decision"] == "flag" and r["verdicts"][0]["uncertain"] and r["verdicts"][0]["rule"] == "uncertain"
    assert _guard(api, BORDER, policy={"tox": {"rules": [], "uncertain": "block"}}).json()["decision"] == "block"
    assert _guard(api, BORDER, policy={"tox": {"uncertain": "allow"}}).json()["decision"] == "allow"
    assert _guard(api, MILD).json()["decision"] == "block"  # 0.8: outside the fallback band
    # a certified review region (evaluator.json calibration routing) replaces the fallback band
    _mock(reg, "tox", calibration={"threshold": 0.5, "routing": {"met": True, "band": [0.4, 0.85]}})
    mild = _guard(api, MILD).json()
    assert mild["decision"] == "flag" and mild["verdicts"][0]["uncertain"]


def test_two_metrics_most_severe_wins(api, reg):
    reg.metrics.register(finished_run(reg), "tox2", threshold=0.5)
    _mock(reg, "tox2")
    policy = {"tox": [{"label": "true", "action": "flag"}]}  # tox2: the default policy
    r = _guard(api, TOXIC, metrics=["tox", "tox2-v1"], policy=policy).json()
    assert [(v["metric"], v["action"]) for v in r["verdicts"]] == [("tox-v1", "flag"), ("tox2-v1", "block")]
    assert r["decision"] == "block"
    assert _guard(api, BORDER, metrics=["tox", "tox2"], policy={"tox2": {"uncertain": "allow"}}
                  ).json()["decision"] == "flag"


def test_unknown_metric_and_bad_requests(api):
    _err(_guard(api, TOXIC, metrics=["tox", "nope"]), 404, "not_found")
    e = _err(_guard(api, TOXIC, policy={"tox": [{"label": "maybe", "action": "block"}]}), 422, "invalid_policy")
    assert "tox-v1" in e["expected"] and "maybe" in e["found"]
    e = _err(_guard(api, TOXIC, policy={"tox": [{"label": "true", "action": "deny"}]}), 422, "invalid_policy")
    assert "deny" in e["found"]
    _err(_guard(api, TOXIC, policy={"tox": [{"label": "true", "action": "block", "min_confidence": 2}]}), 422,
         "invalid_policy")
    _err(_guard(api, TOXIC, policy={"other": []}), 422, "invalid_policy")
    _err(_guard(api, TOXIC, policy={"tox": {"uncertain": "maybe"}}), 422, "invalid_policy")
    _err(api.post("/v1/guard", json={"metrics": ["tox"]}), 422, "invalid_input")
    _err(api.post("/v1/guard", json={"metrics": [], "input": "x"}), 422, "invalid_request")
    _err(_guard(api, {"input": ""}), 422, "invalid_rows")


def test_access_as_score_endpoint(reg):
    reg.projects.create("other")
    keys = {role: reg.keys.create(role, project="demo", role=role).key for role in ("scorer", "viewer")}
    keys["stranger"] = reg.keys.create("s", project="other", role="admin").key
    with TestClient(create_app(reg, auth=True), raise_server_exceptions=False) as c:
        def h(who):
            return {"Authorization": f"Bearer {keys[who]}"}
        assert _guard(c, TOXIC, headers=h("scorer")).json()["decision"] == "block"
        _err(_guard(c, TOXIC, headers=h("viewer")), 403, "forbidden")
        _err(c.post("/v1/metrics/tox/score", json={"rows": ["x"]}, headers=h("viewer")), 403, "forbidden")
        _err(_guard(c, TOXIC, headers=h("stranger")), 404, "not_found")
        _err(_guard(c, TOXIC), 401, "unauthorized")


def test_client_guard(api, monkeypatch):
    def request(self, method, path, *, json_body=None, **_):
        r = api.request(method, path, json=json_body)
        if r.status_code >= 400:
            raise ClientError(r.status_code, r.json()["error"])
        return r.json()

    monkeypatch.setattr(Client, "request", request)
    client = Client("http://testserver")
    assert client.guard("tox", {"input": TOXIC})["decision"] == "block"
    out = client.guard(["tox"], BENIGN, policy={"default": [{"label": "false", "action": "flag"}]})
    assert out["decision"] == "flag"
    with pytest.raises(ClientError) as exc:
        client.guard(["missing"], TOXIC)
    assert exc.value.status == 404
