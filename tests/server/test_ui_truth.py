"""The web UI tells the truth (issue 26), without a browser: generated rows stored as a training set a
person reviews before training (POST /v1/datasets/{id}/generate), one reviewed row regenerated with the
reviewer's reason (POST /v1/review/{id}/regenerate) and trained on in its place; the run page's warning
when the kappa on the training rows is far above the held-out kappa; the tune-judge page linked from the
metric page, and a finished tuning starting a run with its prompt; the review card's threshold and
operator. The browser walk through the generate path is tests/server/test_ui_generate.py."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
from _monitor_util import seed_monitor
from _registry_util import error_of, finished_run, make_registry
from _synth_util import make_rows
from fastapi.testclient import TestClient

from assay.server import _generated, create_app
from assay.server._judge_api import TuneJob
from assay.server._ui import KAPPA_GAP, overfit_gap

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "artifacts" / "toxicity-tfidf-v1"
GEN = {"generate": "mock/generator", "judge": "mock/judge", "seed_fraction": 0.25}


@pytest.fixture
def reg(tmp_path):
    r = make_registry(f"sqlite:///{tmp_path / 'assay.db'}", tmp_path)
    yield r
    r.close()


def _upload_test_set(c: TestClient, headers: dict | None = None) -> dict:
    body = "".join(json.dumps(r) + "\n" for r in make_rows(80)).encode()
    r = c.post("/v1/projects/demo/datasets", files={"file": ("test.jsonl", body)},
               data={"metric": "pii", "kind": "test", "seed_fraction": "0.25"}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def test_generate_stores_a_judged_training_set_and_regenerate_replaces_a_row(reg):
    reg.projects.create("demo")
    with TestClient(create_app(reg)) as c:
        test = _upload_test_set(c)
        r = c.post(f"/v1/datasets/{test['id']}/generate", json={**GEN, "target_size": 60})
        assert r.status_code == 201, r.text
        ds = r.json()
        assert ds["kind"] == "train" and ds["rows"] == 60 and "judged by mock/judge" in ds["name"]
        rows = reg.datasets.rows(ds["id"])
        assert all(r["meta"]["judge"]["model"] == "mock/judge" for r in rows)  # the judge labeled every row
        seeds = {r["input"] for r in make_rows(80)}
        assert not any(r["input"] in seeds for r in rows)
        items = c.post(f"/v1/datasets/{ds['id']}/review", json={"n": 50}).json()
        assert len(items) == 50 and all(i["decision"] is None for i in items)  # undecided until decided

        # regenerate: the row is rejected with the reason, a new row of its label takes its place
        old = items[3]
        body = {**GEN, "reason": "too repetitive", "test_set": test["id"]}
        r = c.post(f"/v1/review/{old['id']}/regenerate", json=body)
        assert r.status_code == 201, r.text
        new = r.json()
        lineage = new["row"]["meta"]["lineage"]
        assert (lineage["replaces"], lineage["feedback"]) == (old["id"], "too repetitive")
        assert new["proposed_label"] == old["proposed_label"] and new["decision"] is None
        assert new["row"]["input"] != old["row"]["input"] and new["position"] >= ds["rows"]
        after = {i["id"]: i for i in c.get(f"/v1/datasets/{ds['id']}/review").json()}
        assert (after[old["id"]]["decision"], after[old["id"]]["note"]) == ("reject", "too repetitive")
        error_of(c.post(f"/v1/review/{old['id']}/regenerate", json=body), 409, "conflict")  # once per row

        # a reject keeps its reason; training reads the set with the decisions applied
        r = c.post(f"/v1/review/{items[5]['id']}", json={"decision": "reject", "note": "labels look wrong"})
        assert r.json()["note"] == "labels look wrong"
        trained = reg.datasets.rows(ds["id"], apply_review=True)
        texts = [r["input"] for r in trained]
        assert len(trained) == 60 - 2 + 1 and new["row"]["input"] in texts
        assert old["row"]["input"] not in texts and items[5]["row"]["input"] not in texts
        c.post(f"/v1/review/{new['id']}", json={"decision": "reject", "note": "still repetitive"})
        assert new["row"]["input"] not in [r["input"] for r in reg.datasets.rows(ds["id"], apply_review=True)]


def test_generate_takes_provider_names_only(reg):
    reg.projects.create("demo")
    with TestClient(create_app(reg)) as c:
        test = _upload_test_set(c)
        url = f"/v1/datasets/{test['id']}/generate"
        error_of(c.post(url, json={**GEN, "generate": {"model": "mock/g", "base_url": "http://x"}}), 400,
                 "provider_not_allowed")
        error_of(c.post(url, json={**GEN, "judge": "openai/gpt-4o-mini"}), 400, "provider_not_allowed")
        error_of(c.post(url, json={**GEN, "target_size": 10**6}), 422)
        r = c.post(url, json={"generate": "mock/generator", "target_size": 20, "seed_fraction": 0.25})
        assert r.status_code == 201 and any("labelled its own rows" in w for w in r.json()["warnings"])
        train = r.json()["id"]
        error_of(c.post(f"/v1/datasets/{train}/generate", json={**GEN, "target_size": 20}), 422, "invalid_input")


def test_generation_holds_at_most_its_slots_and_a_request_past_them_gets_409(reg, monkeypatch):
    """A generate request holds a server thread while the providers work: past MAX_GENERATING running at once a
    request is refused at once (409 conflict, saying why and what to do), never queued behind them; a slot
    freed serves the next request. Regenerate shares the slots."""
    reg.projects.create("demo")
    entered, release = threading.Semaphore(0), threading.Event()
    real = _generated.generate_training_set

    def held(*args, **kwargs):
        entered.release()
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(_generated, "generate_training_set", held)
    n = _generated.MAX_GENERATING
    with TestClient(create_app(reg)) as c:
        test = _upload_test_set(c)
        url, body = f"/v1/datasets/{test['id']}/generate", {**GEN, "target_size": 20}
        with ThreadPoolExecutor(n) as pool:
            running = [pool.submit(c.post, url, json=body) for _ in range(n)]
            assert all(entered.acquire(timeout=60) for _ in range(n))  # every slot taken
            started = time.perf_counter()
            err = error_of(c.post(url, json=body), 409, "conflict")
            assert time.perf_counter() - started < 30  # refused at once, not after the others
            assert f"at most {n} generations" in err["expected"] and "wait for one to finish" in err["fix"]
            release.set()
            done = [f.result(timeout=120) for f in running]
        assert [r.status_code for r in done] == [201] * n, [r.text for r in done]
        again = c.post(url, json=body)  # the slots are free again
        assert again.status_code == 201, again.text
        item = c.post(f"/v1/datasets/{again.json()['id']}/review", json={"n": 5}).json()[0]
        with ExitStack() as slots:  # every slot held: regenerate is refused the same way
            for _ in range(n):
                slots.enter_context(_generated.generation_slot())
            err = error_of(c.post(f"/v1/review/{item['id']}/regenerate",
                                  json={**GEN, "reason": "too repetitive", "test_set": test["id"]}), 409, "conflict")
            assert f"at most {n} generations" in err["expected"]


def test_new_run_page_offers_generator_and_judge_by_name(reg):
    reg.projects.create("demo")
    with TestClient(create_app(reg)) as c:
        page = c.get(f"/projects/{reg.projects.get('demo').id}/new").text
    assert 'id="gen-judge"' in page and '<option value="mock/judge" selected>' in page
    assert 'id="gen-run"' in page and 'id="review-progress"' in page and "<th>Recorded</th>" in page


def _set_report(reg, run_id: str, cv: float, held: float) -> None:
    run = reg.runs.get(run_id)
    path = Path(reg.storage.local_dir(run.artifact_location)) / "report.json"
    report = json.loads(path.read_text())
    report["student"]["kappa"] = held
    report["selection"] = {"winner": "embed", "candidates": [{"name": "tfidf", "cv_kappa": 0.5},
                                                             {"name": "embed", "cv_kappa": cv}]}
    path.write_text(json.dumps(report))


def test_run_page_warns_when_training_kappa_is_far_above_held_out(reg):
    run_id = finished_run(reg)
    _set_report(reg, run_id, cv=0.74, held=0.0)
    with TestClient(create_app(reg)) as c:
        page = c.get(f"/runs/{run_id}").text
        assert "Warning: kappa gap." in page and "0.74" in page and "0.00" in page and "embed" in page
        assert c.get(f"/ui/runs/{run_id}/gap").json()["gap"]["gap"] == pytest.approx(0.74)
        _set_report(reg, run_id, cv=0.74, held=0.74 - KAPPA_GAP / 2)
        assert "Warning: kappa gap." not in c.get(f"/runs/{run_id}").text
        assert c.get(f"/ui/runs/{run_id}/gap").json() == {"gap": None}
    assert overfit_gap({"student": {"kappa": 0.1}}) is None  # no selection: no CV figure, no warning


def test_metric_page_links_tune_judge_and_a_finished_tuning_starts_a_run(reg):
    run_id = finished_run(reg)
    reg.metrics.register(run_id, "tox", confirm=True)
    version = reg.metrics.get("tox")
    tuned = {**version.spec, "prompt": "Tuned: is this toxic?\n\n{input}\n\nAnswer true or false."}
    done = TuneJob(id="tune-done", project_id=version.project_id, metric=version.full_name, dataset_id="ds_x",
                   provider="mock/judge", rows=10, status="done", created_at=time.time(), metric_spec=tuned,
                   summary={"test_kappa_start": {"kappa": 0.2}, "test_kappa_chosen": {"kappa": 0.5}})
    running = done.model_copy(update={"id": "tune-running", "status": "running", "metric_spec": None})
    for job in (done, running):  # the running one's server is gone: it reads as failed (interrupted)
        reg.tunings.save(job.model_dump(mode="json"), "an-earlier-server")
    with TestClient(create_app(reg)) as c:
        page = c.get("/metrics/tox").text
        assert 'id="tune-judge-link" href="/metrics/tox-v1/tune-judge"' in page
        tune = c.get("/metrics/tox-v1/tune-judge").text
        assert 'class="secondary tune-run-earlier" data-job="tune-done"' in tune
        r = c.post("/v1/judge-tunings/tune-done/run", json={})
        assert r.status_code == 201, r.text
        run = r.json()
        assert run["status"] == "queued" and run["config"]["metric"]["prompt"] == tuned["prompt"]
        assert run["config"]["judge"]["model"] == "mock/judge"
        assert run["config"]["data"] == reg.runs.get(run_id).config["data"]  # the tuned version's data
        error_of(c.post("/v1/judge-tunings/tune-running/run", json={}), 409, "invalid_status")
        error_of(c.post("/v1/judge-tunings/nope/run", json={}), 404, "not_found")


def test_review_card_shows_the_threshold_and_operator(reg, tmp_path):
    store = seed_monitor(tmp_path / "monitor.db")
    checks = store.checks()
    # toxicity: scored by the golden artifact (calibrated threshold 0.459); pii: by a registered version
    # whose threshold was moved to 0.3 with a strict operator
    store.register_check("toxicity", "evaluator", spec=checks["toxicity"]["spec"], source=str(GOLDEN))
    run_id = finished_run(reg)
    reg.metrics.register(run_id, "pii", threshold=0.3, operator=">", confirm=True)
    folder = reg.storage.local_dir(reg.metrics.get("pii").artifact_location)
    store.register_check("pii", "evaluator", spec=checks["pii"]["spec"], source=str(folder))
    queued = {m: store.review_queue(m) for m in ("toxicity", "pii")}
    store.close()
    with TestClient(create_app(reg, monitor_db=tmp_path / "monitor.db")) as c:
        page = c.get("/monitor/review?metric=toxicity").text
        v = next(v for v in queued["toxicity"] if v["score"] < 0.4586)
        card = page[page.index(f'id="verdict-{v["id"]}"'):]
        assert f"P(true) {v['score']:.3f}" in card[:1500] and "&lt; threshold 0.459" in card[:1500]
        assert "true when P(true) ≥ 0.459" in card[:1500]
        page = c.get("/monitor/review?metric=pii").text
        v = next(v for v in queued["pii"] if v["score"] > 0.3)
        card = page[page.index(f'id="verdict-{v["id"]}"'):]
        assert f"P(true) {v['score']:.3f} &gt; threshold 0.300" in " ".join(card[:1500].split())
        assert "true when P(true) &gt; 0.300" in card[:1500]


def test_new_endpoints_keep_project_access(reg):
    """A key of another project gets 404 (as for nothing there); a viewer may read but not generate."""
    run_id = finished_run(reg)  # in project demo
    reg.projects.create("other")
    keys = {who: reg.keys.create(who, project=project, role=role).key
            for who, project, role in (("editor", "demo", "editor"), ("viewer", "demo", "viewer"),
                                       ("stranger", "other", "editor"))}
    h = {who: {"Authorization": f"Bearer {k}"} for who, k in keys.items()}
    with TestClient(create_app(reg, auth=True), raise_server_exceptions=False) as c:
        test = _upload_test_set(c, h["editor"])
        gen = f"/v1/datasets/{test['id']}/generate"
        error_of(c.post(gen, json={**GEN, "target_size": 20}, headers=h["stranger"]), 404, "not_found")
        error_of(c.post(gen, json={**GEN, "target_size": 20}, headers=h["viewer"]), 403, "forbidden")
        ds = c.post(gen, json={**GEN, "target_size": 20}, headers=h["editor"]).json()
        item = c.post(f"/v1/datasets/{ds['id']}/review", json={"n": 5}, headers=h["editor"]).json()[0]
        body = {**GEN, "reason": "off-topic", "test_set": test["id"]}
        error_of(c.post(f"/v1/review/{item['id']}/regenerate", json=body, headers=h["stranger"]), 404, "not_found")
        error_of(c.post("/v1/review/nope/regenerate", json=body, headers=h["editor"]), 404, "not_found")
        error_of(c.get(f"/ui/runs/{run_id}/gap", headers=h["stranger"]), 404, "not_found")
        assert c.get(f"/ui/runs/{run_id}/gap", headers=h["viewer"]).json() == {"gap": None}

