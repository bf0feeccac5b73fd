"""The web UI's generate path in headless Chromium (Playwright), against `assay serve` with its own worker:
the generator and the judge chosen by name (the mock providers: no network), rows generated from the test
set's seeds, the 50-row review sample shown with each row's recorded decision (undecided until decided,
compared with the API's record), decided row by row (accept, reject with a reason, regenerate with a reason,
relabel), the budget chosen, then the run launched with the reviewed set and the judge, and training started.

Screenshots go to $ASSAY_TEST_ARTIFACTS/ui_generate (default: the test's tmp folder).
Needs `pip install playwright` and Debian's chromium (`apt-get install -y chromium`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _browser_util import assay_serve, browser  # noqa: F401  (the Chromium fixture)
from _synth_util import make_rows


@pytest.fixture
def server(tmp_path):
    with assay_serve(tmp_path, "--db", f"sqlite:///{tmp_path / 'assay.db'}", "--artifacts", str(tmp_path / "artifacts"),
                     "--workers", "1") as url:
        yield url


def _table(page) -> dict[str, tuple[str, str]]:
    """Review item id -> (data-decision, the Recorded cell's text), as the table shows them."""
    return {tr["id"]: (tr["decision"], tr["recorded"]) for tr in page.eval_on_selector_all(
        "#review-table tbody tr", "trs => trs.map(t => ({id: t.dataset.item, decision: t.dataset.decision, "
        "recorded: t.querySelector('.recorded').textContent}))")}


def _expected(items: list[dict]) -> dict[str, tuple[str, str]]:
    """The same, from the API's record (GET /v1/datasets/{id}/review)."""
    replaced = {((i["row"].get("meta") or {}).get("lineage") or {}).get("replaces") for i in items}
    out = {}
    for i in items:
        if not i["decision"]:
            out[i["id"]] = ("undecided", "undecided")
            continue
        what = (f"relabel → {i['label']}" if i["decision"] == "relabel"
                else "reject (regenerated)" if i["id"] in replaced else i["decision"])
        out[i["id"]] = (i["decision"], f"{what}: {i['note']}" if i["note"] else what)
    return out


def _decide(page, item: str, decision: str, reason: str = "") -> None:
    row = page.locator(f"#review-table tr[data-item={item}]")
    row.locator("select.decision").select_option(decision)
    if reason:
        row.locator("input.reason").fill(reason)
        row.locator("button.save").click()
    if decision != "regenerate":
        page.wait_for_selector(f"#review-table tr[data-item={item}]:not([data-decision=undecided])")


@pytest.mark.timeout(900)
def test_ui_generate_path_review_then_train(browser, server, tmp_path):  # noqa: F811
    shots = Path(os.environ.get("ASSAY_TEST_ARTIFACTS") or tmp_path) / "ui_generate"
    shots.mkdir(parents=True, exist_ok=True)
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in make_rows(80)))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    def api(path: str):
        return page.request.get(server + path).json()

    page.goto(server + "/projects")
    page.fill("#new-project input[name=name]", "gen-demo")
    page.click("#new-project button[type=submit]")
    page.wait_for_url("**/projects/prj_*")
    project = page.url.rstrip("/").rsplit("/", 1)[-1]
    page.click("#new-run")
    page.select_option("#metric-preset", "pii")
    page.click("#metric-next")
    page.fill("#seed-fraction", "0.25")
    page.set_input_files("#test-file", str(tmp_path / "test.jsonl"))
    page.click("#test-upload")
    page.wait_for_selector("#test-feedback .dataset-ok")
    page.click("#test-next")

    # step 3: generate; nothing to go on with until rows are generated and shown
    page.check("input[name=train-mode][value=generate]")
    assert page.is_disabled("#train-next")
    page.select_option("#gen-model", "mock/generator")
    page.select_option("#gen-judge", "mock/generator")
    assert page.is_visible("#gen-same-judge")  # the generator would judge its own rows: said so
    page.select_option("#gen-judge", "mock/judge")  # the judge, by name
    assert not page.is_visible("#gen-same-judge")
    page.fill("#gen-size", "120")
    page.click("#gen-run")
    page.wait_for_selector("#review-table tbody tr >> nth=49", timeout=120_000)
    assert page.locator("#review-table tbody tr").count() == 50
    train = next(d for d in api(f"/v1/projects/{project}/datasets") if d["kind"] == "train")
    assert train["rows"] == 120 and "judged by mock/judge" in train["name"]
    items = api(f"/v1/datasets/{train['id']}/review")
    assert len(items) == 50 and not any(i["decision"] for i in items)
    assert _table(page) == _expected(items)  # every row undecided, as recorded
    assert set(page.locator("#review-table select.decision").evaluate_all("s => s.map(x => x.value)")) == {""}
    page.screenshot(path=str(shots / "01_generated_sample.png"), full_page=True)

    ids = [i["id"] for i in items]
    _decide(page, ids[0], "accept")
    # a reject needs a reason: without one nothing is recorded
    row = page.locator(f"#review-table tr[data-item={ids[1]}]")
    row.locator("select.decision").select_option("reject")
    row.locator("button.save").click()
    page.wait_for_selector("#reason-needed")
    assert api(f"/v1/datasets/{train['id']}/review")[1]["decision"] is None
    _decide(page, ids[1], "reject", "labels look wrong")
    # regenerate: the row is rejected with the reason and a new row takes its place, right after it
    _decide(page, ids[2], "regenerate", "too repetitive")
    page.wait_for_selector("#review-table tr.replacement", timeout=120_000)
    assert page.locator("#review-table tbody tr").count() == 51
    replacement = page.locator("#review-table tr.replacement").get_attribute("data-item")
    order = page.eval_on_selector_all("#review-table tbody tr", "ts => ts.map(t => t.dataset.item)")
    assert order.index(replacement) == order.index(ids[2]) + 1
    assert page.locator(f"#review-table tr[data-item={ids[2]}]").get_attribute("class") == "replaced"
    other = "false" if items[3]["proposed_label"] == "true" else "true"
    _decide(page, ids[3], f"relabel:{other}")
    page.screenshot(path=str(shots / "02_decided_some.png"), full_page=True)
    for item in [*ids[4:], replacement]:
        _decide(page, item, "accept")

    items = api(f"/v1/datasets/{train['id']}/review")
    assert len(items) == 51 and _table(page) == _expected(items)  # the table shows what the API recorded
    by = {i["id"]: i for i in items}
    assert (by[ids[1]]["decision"], by[ids[1]]["note"]) == ("reject", "labels look wrong")
    assert (by[ids[2]]["decision"], by[ids[2]]["note"]) == ("reject", "too repetitive")
    assert by[replacement]["row"]["meta"]["lineage"]["replaces"] == ids[2]
    assert page.inner_text("#review-progress") == "50 of 50 rows decided · 1 regenerated"
    page.screenshot(path=str(shots / "03_all_decided.png"), full_page=True)

    # step 4: the budget is the engineer's choice on this path too; the config trains on the reviewed set
    page.click("#train-next")
    page.wait_for_selector("#step-4:not([hidden])")
    page.select_option("#budget", "fast")
    page.fill("#max-steps", "12")
    preview = json.loads(page.inner_text("#config-preview"))
    assert preview["data"]["train_set"] == f"dataset:{train['id']}" and preview["judge"] == "mock/judge"
    assert preview["train"]["budget"] == "fast" and "generate" not in preview
    summary = page.inner_text("#launch-summary")
    assert "labeled by the judge mock/judge" in summary
    assert "48 accepted, 1 rejected, 1 relabelled, 1 regenerated, 0 undecided" in summary
    page.screenshot(path=str(shots / "04_launch.png"), full_page=True)
    page.click("#launch")
    page.wait_for_url("**/runs/run_*")
    run_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    run = api(f"/v1/runs/{run_id}")
    assert run["config"]["judge"]["model"] == "mock/judge"
    assert run["config"]["data"]["train_set"] == f"dataset:{train['id']}"

    # training starts (the worker claims the run and fits on the reviewed rows); then it is cancelled
    page.wait_for_selector("#run-status[data-status=training], #run-status[data-status=fine_tuned], "
                           "#run-status[data-status=failed]", timeout=600_000)
    assert page.get_attribute("#run-status", "data-status") != "failed", page.inner_text("#run-failure")
    assert "Training" in page.inner_text("#run-history")
    page.screenshot(path=str(shots / "05_training.png"), full_page=True)
    if page.is_visible("#run-cancel"):
        page.click("#run-cancel")
    assert not errors, errors
