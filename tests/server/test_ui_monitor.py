"""The monitoring pages in headless Chromium (Playwright) against `assay serve --monitor-db`: a monitor
store seeded by a real Monitor (MockEvaluators), the monitoring page (verdicts per day, pass rate,
routed counts), labeling a routed verdict in the review queue (checked in the store), the drift page.

Screenshots go to $ASSAY_TEST_ARTIFACTS/ui_monitor (default: the test's tmp folder).
Needs `pip install playwright` and Debian's chromium (`apt-get install -y chromium`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _browser_util import assay_serve, browser  # noqa: F401  (the Chromium fixture)
from _monitor_util import seed_monitor

from assay.monitor import Store


@pytest.fixture
def monitored_server(tmp_path):
    store = seed_monitor(tmp_path / "monitor.db")
    store.close()
    with assay_serve(tmp_path, "--db", f"sqlite:///{tmp_path / 'assay.db'}", "--artifacts", str(tmp_path / "artifacts"),
                     "--workers", "0", "--monitor-db", str(tmp_path / "monitor.db"), stop_timeout=30) as url:
        yield url, tmp_path / "monitor.db"


@pytest.mark.timeout(180)
def test_monitoring_review_and_drift_pages(browser, monitored_server, tmp_path):  # noqa: F811
    url, db = monitored_server
    shots = Path(os.environ.get("ASSAY_TEST_ARTIFACTS") or tmp_path) / "ui_monitor"
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    store = Store(db)
    try:
        # monitoring: one row per metric with the stored counts, a per-day table with two days
        page.goto(url + "/projects")
        page.click("header nav >> text=Monitoring")
        page.wait_for_url("**/monitor")
        assert page.inner_text("h1") == "Monitoring"
        tox = page.locator("#monitor-metrics tr[data-metric=toxicity]")
        routes = store.route_counts()["toxicity"]
        assert tox.locator(".n-verdicts").inner_text() == "24"
        assert tox.locator(".n-audit").inner_text() == str(routes["review:audit"])
        assert tox.locator(".n-review").inner_text() == str(routes["review:uncertain"]
                                                              + routes["review:high_severity_fail"])
        passed = sum(v["passed"] for v in store.verdicts("toxicity"))
        assert tox.locator(".pass-rate").inner_text() == f"{passed / 24 * 100:.1f}%"
        assert page.locator("table.days").first.locator("tbody tr").count() == 2
        page.screenshot(path=str(shots / "01_monitoring.png"), full_page=True)

        # review queue: the trace in view, label the first toxicity verdict with a button
        page.click("header nav >> text=Review")
        page.wait_for_url("**/monitor/review")
        page.select_option("#queue-filter select[name=metric]", "toxicity")
        page.click("#queue-filter button")
        page.wait_for_url("**/monitor/review?metric=toxicity")
        first = page.locator(".review-item").first
        vid = int(first.get_attribute("data-verdict"))
        v = store.verdict(vid)
        assert v["metric"] == "toxicity" and v["review_label"] is None
        assert v["row"]["input"] in first.locator("table.trace").inner_text()
        human = "false" if v["label"] == "true" else "true"
        page.screenshot(path=str(shots / "02_review_queue.png"), full_page=True)
        first.locator("input[name=reviewer]").fill("ana")
        first.locator(f"button.label-button[value={human}]").click()
        page.wait_for_url(f"**/monitor/review?metric=toxicity&done={vid}")
        assert f"#{vid}" in page.inner_text("#labeled")
        assert page.locator(f"#verdict-{vid}").count() == 0  # gone from the queue
        v = store.verdict(vid)
        assert (v["review_label"], v["reviewer"]) == (human, "ana")  # the label landed in the store
        page.screenshot(path=str(shots / "03_labeled.png"), full_page=True)

        # drift: score drift and label mix per window, agreement with the one review (a disagreement)
        page.click("header nav >> text=Drift")
        page.wait_for_url("**/monitor/drift")
        card = page.locator(".drift-metric[data-metric=toxicity]")
        assert "1 reviewed" in card.locator(".agreement").inner_text()
        assert "accuracy 0.0%" in card.locator(".agreement").inner_text()
        assert card.locator("table.windows tbody tr").count() == 2
        assert card.locator("table.confusion").count() == 1
        page.screenshot(path=str(shots / "04_drift.png"), full_page=True)
        assert not errors, errors
    finally:
        store.close()
