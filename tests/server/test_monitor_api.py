"""The monitor on the server: /v1/monitor/summary, /v1/review/queue, POST /v1/verdicts/{id}/review and
/v1/monitor/drift over a monitor store seeded by a real Monitor, with project access control: a key
sees only monitored metrics registered in its projects, labels only as editor, and everything else
is 404 in the one error shape."""

from __future__ import annotations

from collections import Counter

import pytest
from _monitor_util import seed_monitor
from _registry_util import add_binary_datasets, fake_worker, make_registry, run_config
from _registry_util import error_of as _err
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from assay.server import create_app


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A registry where project alpha registered 'toxicity' (beta has nothing), a seeded monitor store
    (toxicity, registered; pii, registered nowhere), and keys."""
    tmp = tmp_path_factory.mktemp("monitor_api")
    reg = make_registry(f"sqlite:///{tmp / 'assay.db'}", tmp)
    reg.projects.create("alpha")
    reg.projects.create("beta")
    t, tr = add_binary_datasets(reg, "alpha", n_test=60, n_train=80)
    run = reg.runs.create("alpha", run_config(t, tr))
    assert fake_worker(reg).run_once().status.value == "fine_tuned"
    reg.metrics.register(run.id, "toxicity", confirm=True)
    store = seed_monitor(tmp / "monitor.db")
    keys = {"ops": reg.keys.create("ops").key,
            "a-view": reg.keys.create("a-view", project="alpha", role="viewer").key,
            "a-edit": reg.keys.create("a-edit", project="alpha", role="editor").key,
            "b-edit": reg.keys.create("b-edit", project="beta", role="editor").key}
    yield reg, store, keys
    store.close()
    reg.close()


@pytest.fixture
def api(world):
    reg, store, keys = world
    with TestClient(create_app(reg, auth=True, monitor_db=store.path), raise_server_exceptions=False) as c:
        yield c, store, keys


def _h(keys, who):
    return {"Authorization": f"Bearer {keys[who]}"}


def test_summary_counts_per_day_and_scopes_metrics(api):
    c, store, keys = api
    r = c.get("/v1/monitor/summary", headers=_h(keys, "ops"))
    assert r.status_code == 200, r.text
    by = {m["metric"]: m for m in r.json()["metrics"]}
    assert set(by) == {"toxicity", "pii"}  # the operator also sees the metric registered nowhere
    tox = by["toxicity"]
    stored = store.verdicts("toxicity")
    assert tox["verdicts"] == len(stored) == 24 and len(tox["days"]) == 2
    assert sum(d["verdicts"] for d in tox["days"]) == 24
    assert tox["pass_rate"] == pytest.approx(sum(v["passed"] for v in stored) / 24, abs=1e-6)
    routes = store.route_counts()["toxicity"]
    assert tox["review"] == routes["review:uncertain"] + routes["review:high_severity_fail"]
    assert tox["audit"] == routes["review:audit"] > 0
    assert tox["pending"] == len(store.review_queue("toxicity", limit=None)) > 0
    assert tox["labels"] == ["true", "false"] and sum(tox["label_counts"].values()) == 24
    # a project key sees only the metrics registered in its projects
    mine = c.get("/v1/monitor/summary", headers=_h(keys, "a-view")).json()["metrics"]
    assert [m["metric"] for m in mine] == ["toxicity"]
    assert c.get("/v1/monitor/summary", headers=_h(keys, "b-edit")).json()["metrics"] == []
    _err(c.get("/v1/monitor/summary?metric=toxicity", headers=_h(keys, "b-edit")), 404, "not_found")
    _err(c.get("/v1/monitor/summary?metric=pii", headers=_h(keys, "a-view")), 404, "not_found")
    _err(c.get("/v1/monitor/summary?metric=nope", headers=_h(keys, "ops")), 404, "not_found")
    _err(c.get("/v1/monitor/summary?days=0", headers=_h(keys, "ops")), 422, "invalid_request")
    _err(c.get("/v1/monitor/summary"), 401, "unauthorized")


def test_review_queue_shows_the_judged_trace_content(api):
    c, store, keys = api
    r = c.get("/v1/review/queue?limit=500", headers=_h(keys, "a-view"))
    assert r.status_code == 200, r.text
    items = r.json()
    assert items and {i["metric"] for i in items} == {"toxicity"}
    pending = {v["id"] for v in store.review_queue("toxicity", limit=None)}
    assert {i["verdict_id"] for i in items} == pending
    first = items[0]
    row = store.verdict(first["verdict_id"])["row"]
    assert first["fields"] == {"input": row["input"]} and first["labels"] == ["true", "false"]
    assert first["why"] in {"uncertain", "high_severity_fail", "audit"}
    assert len(c.get("/v1/review/queue?limit=3", headers=_h(keys, "ops")).json()) == 3
    both = c.get("/v1/review/queue?limit=500", headers=_h(keys, "ops")).json()
    assert {i["metric"] for i in both} == {"toxicity", "pii"}
    _err(c.get("/v1/review/queue?metric=toxicity", headers=_h(keys, "b-edit")), 404, "not_found")
    assert c.get("/v1/review/queue", headers=_h(keys, "b-edit")).json() == []


def test_label_a_verdict_with_access_control(api):
    c, store, keys = api
    item = c.get("/v1/review/queue?metric=toxicity", headers=_h(keys, "a-view")).json()[0]
    vid = item["verdict_id"]
    url = f"/v1/verdicts/{vid}/review"
    _err(c.post(url, json={"label": "true"}, headers=_h(keys, "b-edit")), 404, "not_found")  # another project
    _err(c.post(url, json={"label": "true"}, headers=_h(keys, "a-view")), 403, "forbidden")  # read only
    bad = _err(c.post(url, json={"label": "maybe"}, headers=_h(keys, "a-edit")), 422, "invalid_label")
    assert "['true', 'false']" in bad["expected"] and "maybe" in bad["found"]
    _err(c.post("/v1/verdicts/999999/review", json={"label": "true"}, headers=_h(keys, "ops")), 404, "not_found")
    # verdict ids only: a trace id is not a verdict id
    _err(c.post(f"/v1/verdicts/{item['trace_id']}/review", json={"label": "true"}, headers=_h(keys, "ops")), 422,
         "invalid_request")
    _err(c.post(url, json={}, headers=_h(keys, "a-edit")), 422, "invalid_request")
    assert store.verdict(vid)["review_label"] is None  # nothing stored by the refused requests
    r = c.post(url, json={"label": "yes", "note": "clearly"}, headers=_h(keys, "a-edit"))
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["verdict_id"] == vid and out["label"] == "true" and out["metric"] == "toxicity"
    assert out["agrees"] == (item["label"] == "true")
    v = store.verdict(vid)
    assert (v["review_label"], v["reviewer"], v["review_note"]) == ("true", "a-edit", "clearly")
    left = c.get("/v1/review/queue?metric=toxicity&limit=500", headers=_h(keys, "a-view")).json()
    assert vid not in {i["verdict_id"] for i in left}
    # a metric registered nowhere: only an operator key labels it
    pii = next(i for i in c.get("/v1/review/queue?metric=pii", headers=_h(keys, "ops")).json())
    _err(c.post(f"/v1/verdicts/{pii['verdict_id']}/review", json={"label": "false"}, headers=_h(keys, "a-edit")),
         404, "not_found")
    r = c.post(f"/v1/verdicts/{pii['verdict_id']}/review", json={"label": "false", "reviewer": "ana"},
               headers=_h(keys, "ops"))
    assert r.status_code == 201 and store.verdict(pii["verdict_id"])["reviewer"] == "ana"


def test_drift_scores_label_mix_and_agreement(api):
    c, store, keys = api
    for i, item in enumerate(c.get("/v1/review/queue?metric=toxicity&limit=6", headers=_h(keys, "a-edit")).json()):
        human = item["label"] if i % 3 else ("false" if item["label"] == "true" else "true")  # 2 of 6 disagree
        assert c.post(f"/v1/verdicts/{item['verdict_id']}/review", json={"label": human},
                      headers=_h(keys, "a-edit")).status_code == 201
    r = c.get("/v1/monitor/drift?metric=toxicity&window=1d", headers=_h(keys, "a-view"))
    assert r.status_code == 200, r.text
    [d] = r.json()
    reviewed = store.reviewed("toxicity")
    assert d["metric"] == "toxicity" and d["n"] == 24 and len(d["windows"]) == 2
    assert d["agreement"]["reviews"] == len(reviewed) >= 6
    agree = sum(v["review_label"] == v["label"] for v in reviewed)
    assert d["agreement"]["accuracy_reviewed"] == pytest.approx(agree / len(reviewed), abs=1e-6)
    assert sum(n for row in d["agreement"]["confusion"].values() for n in row.values()) == len(reviewed)
    assert d["agreement"]["kappa_reviewed"] is not None and d["agreement"]["kappa_reviewed"] < 1
    assert d["windows"][0]["label_shift"] == 0 and sum(d["label_mix"].values()) == pytest.approx(1)
    assert all("psi" in w for w in d["windows"]) and d["baseline"]["source"] == "first_window"
    assert store.checks()["toxicity"]["baseline"] is None  # a GET records nothing
    assert [x["metric"] for x in c.get("/v1/monitor/drift", headers=_h(keys, "ops")).json()] == ["pii", "toxicity"]
    _err(c.get("/v1/monitor/drift?metric=toxicity", headers=_h(keys, "b-edit")), 404, "not_found")
    _err(c.get("/v1/monitor/drift?metric=toxicity&window=soon", headers=_h(keys, "a-view")), 422, "invalid_input")


def test_store_is_the_operators_choice(world, tmp_path, monkeypatch):
    reg, store, _ = world
    monkeypatch.setenv("ASSAY_MONITOR_DB", str(store.path))
    app = create_app(reg)
    assert app.state.monitor_db == store.path and app.state.monitor is None  # opened on first use
    with TestClient(app, raise_server_exceptions=False) as c:  # loopback without auth: everything
        names = [m["metric"] for m in c.get("/v1/monitor/summary").json()["metrics"]]
        assert names == ["pii", "toxicity"]
        # no query parameter names a file
        r = c.get("/v1/monitor/summary", params={"db": str(tmp_path / "other.db")})
        assert [m["metric"] for m in r.json()["metrics"]] == names and not (tmp_path / "other.db").exists()
    from click.testing import CliRunner

    from assay.cli import cli

    help_text = CliRunner().invoke(cli, ["serve", "--help"]).output
    assert "--monitor-db" in help_text and "monitor.db" in help_text


def test_ui_pages_follow_the_same_access(api):
    c, store, keys = api
    page = c.get("/monitor", headers=_h(keys, "a-view"))
    assert page.status_code == 200 and 'data-metric="toxicity"' in page.text and 'data-metric="pii"' not in page.text
    queue = c.get("/monitor/review", headers=_h(keys, "a-view")).text
    pending = store.review_queue("toxicity", limit=1)[0]
    assert f'id="verdict-{pending["id"]}"' in queue and "pii" not in queue
    assert c.get("/monitor/review?metric=toxicity", headers=_h(keys, "b-edit")).status_code == 404
    assert c.get("/monitor/drift", headers=_h(keys, "b-edit")).status_code == 200
    assert c.get("/monitor/drift?metric=pii", headers=_h(keys, "a-edit")).status_code == 404
    form = {"label": "false", "metric": "toxicity"}
    assert c.post(f"/monitor/review/{pending['id']}", data=form, headers=_h(keys, "b-edit")).status_code == 404
    assert c.post(f"/monitor/review/{pending['id']}", data=form, headers=_h(keys, "a-view")).status_code == 403
    bad = c.post(f"/monitor/review/{pending['id']}", data={"label": "maybe"}, headers=_h(keys, "a-edit"))
    assert bad.status_code == 422 and "invalid_label" in bad.text
    assert store.verdict(pending["id"])["review_label"] is None
    r = c.post(f"/monitor/review/{pending['id']}", data=form, headers=_h(keys, "a-edit"), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/monitor/review?metric=toxicity&done={pending['id']}"
    assert store.verdict(pending["id"])["review_label"] == "false"
    anon = c.get("/monitor", follow_redirects=False)  # no key: the login page
    assert anon.status_code == 303 and anon.headers["location"].startswith("/login")


def _label(c, keys, vid, label, reviewer, who="a-edit"):
    r = c.post(f"/v1/verdicts/{vid}/review", json={"label": label, "reviewer": reviewer}, headers=_h(keys, who))
    assert r.status_code == 201, r.text
    return r.json()


def test_several_reviewers_disagreements_and_agreement(api):
    """Two reviewers disagree on a verdict: it leaves the review queue for the disagreement queue (scoped like
    every monitor endpoint) until a third reviewer decides; agreement reports people, judge and evaluator."""
    c, store, keys = api
    first, second = c.get("/v1/review/queue?metric=toxicity&limit=2", headers=_h(keys, "a-view")).json()
    a, b = first["verdict_id"], second["verdict_id"]
    assert _label(c, keys, a, "true", "ana")["review_status"] == "single"
    out = _label(c, keys, a, "false", "bo")
    assert (out["consensus"], out["review_status"], out["reviewers"]) == (None, "tie", 2)
    _label(c, keys, b, "true", "ana")
    _label(c, keys, b, "true", "bo")
    assert _label(c, keys, b, "false", "judge:mock/j")["judge"] is True
    assert len(store.reviews(a)) == 2 and store.verdict(b)["review_label"] == "true"  # every label kept

    r = c.get("/v1/review/disagreements?metric=toxicity", headers=_h(keys, "a-view"))
    assert r.status_code == 200, r.text
    [item] = r.json()
    assert item["verdict_id"] == a and item["status"] == "tie" and item["consensus"] is None
    assert {x["reviewer"]: x["label"] for x in item["reviews"]} == {"ana": "true", "bo": "false"}
    assert item["labels"] == ["true", "false"] and item["fields"]["input"]
    assert [i["verdict_id"] for i in c.get("/v1/review/disagreements", headers=_h(keys, "ops")).json()] == [a]
    # another project's key sees nothing
    assert c.get("/v1/review/disagreements", headers=_h(keys, "b-edit")).json() == []
    _err(c.get("/v1/review/disagreements?metric=toxicity", headers=_h(keys, "b-edit")), 404, "not_found")
    assert c.get("/v1/monitor/agreement", headers=_h(keys, "b-edit")).json() == []
    _err(c.get("/v1/monitor/agreement?metric=toxicity", headers=_h(keys, "b-edit")), 404, "not_found")
    _err(c.get("/v1/review/disagreements", headers={}), 401, "unauthorized")
    tox = c.get("/v1/monitor/summary?metric=toxicity", headers=_h(keys, "a-view")).json()["metrics"][0]
    assert tox["disagreements"] == 1

    [rep] = c.get("/v1/monitor/agreement?metric=toxicity&n_boot=100", headers=_h(keys, "a-view")).json()
    h = rep["human_vs_human"]
    assert h["verdicts"] == 2 and h["ties"] == 1 and h["unanimous"] == 1
    [pair] = h["pairs"]
    assert pair["reviewers"] == ["ana", "bo"] and pair["n"] == 2 and pair["accuracy"] == 0.5
    [judge] = rep["judge_vs_human"]
    assert judge["judge"] == "judge:mock/j" and judge["n"] == 1 and judge["accuracy"] == 0
    assert rep["student_vs_human"]["n"] == rep["reviewed"] == len(store.reviewed("toxicity"))
    [d] = c.get("/v1/monitor/drift?metric=toxicity", headers=_h(keys, "a-view")).json()
    assert d["people"]["human_vs_human"]["verdicts"] == 2 and d["people"]["judge_vs_human"][0]["n"] == 1

    _err(c.post(f"/v1/verdicts/{a}/review", json={"label": "true", "reviewer": "cy"}, headers=_h(keys, "a-view")),
         403, "forbidden")  # deciding needs the editor role like any label
    assert _label(c, keys, a, "true", "cy")["consensus"] == "true"  # the deciding review
    assert c.get("/v1/review/disagreements?metric=toxicity", headers=_h(keys, "a-view")).json() == []
    [settled] = c.get("/v1/review/disagreements?metric=toxicity&settled=true", headers=_h(keys, "a-view")).json()
    assert settled["verdict_id"] == a and (settled["status"], settled["consensus"]) == ("majority", "true")


def test_disagreement_page_and_people_agreement_on_the_drift_page(api):
    c, store, keys = api
    item = c.get("/v1/review/queue?metric=toxicity&limit=1", headers=_h(keys, "a-view")).json()[0]
    vid = item["verdict_id"]
    _label(c, keys, vid, "true", "dee")
    _label(c, keys, vid, "false", "eve")
    _label(c, keys, vid, "true", "judge:mock/j")
    page = c.get("/monitor/review/disagreements?metric=toxicity", headers=_h(keys, "a-view"))
    assert page.status_code == 200 and f'id="verdict-{vid}"' in page.text
    assert 'data-reviewer="dee"' in page.text and 'data-reviewer="eve"' in page.text
    assert 'name="back" value="disagreements"' in page.text and 'class="label-button"' in page.text
    assert f'id="verdict-{vid}"' not in c.get("/monitor/review/disagreements", headers=_h(keys, "b-edit")).text
    assert c.get("/monitor/review/disagreements?metric=toxicity", headers=_h(keys, "b-edit")).status_code == 404
    assert 'id="disagreements-link"' in c.get("/monitor/review", headers=_h(keys, "a-view")).text
    form = {"label": "false", "reviewer": "fay", "metric": "toxicity", "back": "disagreements"}
    r = c.post(f"/monitor/review/{vid}", data=form, headers=_h(keys, "a-edit"), follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/monitor/review/disagreements?metric=toxicity&done={vid}"
    assert store.verdict(vid)["review_label"] == "false"  # the deciding review settled it
    assert f'id="verdict-{vid}"' not in c.get("/monitor/review/disagreements", headers=_h(keys, "a-view")).text
    odd = {"label": "false", "reviewer": "gus", "back": "https://elsewhere.example/"}  # never a caller's URL
    r = c.post(f"/monitor/review/{vid}", data=odd, headers=_h(keys, "a-edit"), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/monitor/review?")
    drift_page = c.get("/monitor/drift?metric=toxicity", headers=_h(keys, "a-view")).text
    assert 'class="list people-agreement"' in drift_page and 'class="human-vs-human"' in drift_page
    assert 'class="student-vs-human"' in drift_page and "judge:mock/j" in drift_page


def test_prometheus_metrics_of_the_store_need_a_key_and_show_only_visible_metrics(api):
    """GET /v1/monitor/metrics (issue 25): the store's verdict series in the Prometheus text format, behind
    the key check like every /v1 path (only /v1/health is open), scoped like /v1/monitor/summary."""
    c, store, keys = api

    def scrape(who):
        r = c.get("/v1/monitor/metrics", headers=_h(keys, who))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
        out = {}
        for fam in text_string_to_metric_families(r.text):
            for s in fam.samples:
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return out

    _err(c.get("/v1/monitor/metrics"), 401, "unauthorized")
    m = scrape("ops")
    assert {dict(k)["metric"] for k in m["assay_monitor_verdicts_total"]} == {"toxicity", "pii"}
    stored = store.verdicts("toxicity")
    by_label = Counter((str(v["label"]), str(bool(v["passed"])).lower()) for v in stored)
    assert {(dict(k)["label"], dict(k)["passed"]): n for k, n in m["assay_monitor_verdicts_total"].items()
            if dict(k)["metric"] == "toxicity"} == dict(by_label)
    assert m["assay_monitor_pass_rate"][(("metric", "toxicity"),)] == pytest.approx(
        sum(v["passed"] for v in stored) / len(stored))
    routes = store.route_counts()["toxicity"]
    assert m["assay_monitor_audited_total"][(("metric", "toxicity"),)] == routes["review:audit"]
    assert m["assay_monitor_routed_to_review_total"][(("metric", "toxicity"), ("reason", "uncertain"))] == \
        routes["review:uncertain"]
    assert {dict(k)["metric"] for k in scrape("a-view")["assay_monitor_verdicts_total"]} == {"toxicity"}
    assert "assay_monitor_verdicts_total" not in scrape("b-edit")
