"""The web UI end to end in headless Chromium (Playwright), against `assay serve` with its own
worker process and the real training: create a project, upload a test set (a bad file first,
then a good one), choose uploaded training data and review rows, launch, watch the run reach
Fine-tuned, open the report, register, score pasted text in the try-it box.

Screenshots of each step go to $ASSAY_TEST_ARTIFACTS/ui_flow (default: the test's tmp folder).
Needs `pip install playwright` and Debian's chromium (`apt-get install -y chromium`).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from _browser_util import assay_serve, browser  # noqa: F401  (the Chromium fixture)


def _sample(path: Path, n_true: int, n_false: int, seed: int, skip: set[str]) -> list[dict]:
    """A label-balanced sample with distinct inputs (none of the inputs in ``skip``)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rng = random.Random(seed)
    rng.shuffle(rows)
    out, need, seen = [], {"true": n_true, "false": n_false}, set(skip)
    for r in rows:
        if r["input"] not in seen and need.get(r["label"], 0) > 0:
            need[r["label"]] -= 1
            seen.add(r["input"])
            out.append({"id": r["id"], "input": r["input"], "label": r["label"]})
    return out


@pytest.fixture
def server(tmp_path):
    with assay_serve(tmp_path, "--db", f"sqlite:///{tmp_path / 'assay.db'}", "--artifacts", str(tmp_path / "artifacts"),
                     "--workers", "1") as url:
        yield url


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_ui_whole_flow(browser, server, shared_data, tmp_path):  # noqa: F811
    shots = Path(os.environ.get("ASSAY_TEST_ARTIFACTS") or tmp_path) / "ui_flow"
    shots.mkdir(parents=True, exist_ok=True)
    source = shared_data / "pii_presidio_synth.jsonl"
    test_rows = _sample(source, 60, 60, seed=1, skip=set())
    train_rows = _sample(source, 150, 150, seed=2, skip={r["input"] for r in test_rows})
    (tmp_path / "pii_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test_rows))
    (tmp_path / "pii_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    bad = test_rows[:5] + [{"id": "bad-1", "input": "", "label": "true"},
                           {"id": "bad-2", "input": "x", "label": "maybe"}]
    (tmp_path / "pii_bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    n = iter(range(1, 100))

    def shot(name: str, full: bool = False) -> None:
        page.screenshot(path=str(shots / f"{next(n):02d}_{name}.png"), full_page=full)

    # projects: create one
    page.goto(server + "/")
    page.fill("#new-project input[name=name]", "pii-demo")
    page.fill("#new-project input[name=description]", "PII detector from Presidio synthetic rows")
    shot("projects")
    page.click("#new-project button[type=submit]")
    page.wait_for_url("**/projects/prj_*")
    assert page.inner_text("h1") == "pii-demo"
    shot("project")

    # step 1: metric
    page.click("#new-run")
    page.wait_for_selector("#step-1:not([hidden])")
    page.select_option("#metric-preset", "pii")
    assert "privacy judge" in page.inner_text("#metric-preview")
    shot("step1_metric")
    page.click("#metric-next")

    # step 2: test set (a bad file is refused with per-row errors, then the good one)
    page.wait_for_selector("#step-2:not([hidden])")
    page.set_input_files("#test-file", str(tmp_path / "pii_bad.jsonl"))
    page.click("#test-upload")
    page.wait_for_selector("#test-feedback table.row-errors")
    feedback = page.inner_text("#test-feedback")
    assert "invalid_rows" in feedback and "bad-1" in feedback and "bad-2" in feedback
    assert page.is_disabled("#test-next")
    shot("step2_bad_upload")
    page.set_input_files("#test-file", str(tmp_path / "pii_test.jsonl"))
    page.click("#test-upload")
    page.wait_for_selector("#test-feedback .dataset-ok")
    summary = page.inner_text("#test-feedback")
    assert "120 rows" in summary and "seeds" in summary and "held out" in summary
    shot("step2_test_set")
    page.click("#test-next")

    # step 3: uploaded training data + the 50-row review
    page.wait_for_selector("#step-3:not([hidden])")
    page.set_input_files("#train-file", str(tmp_path / "pii_train.jsonl"))
    page.click("#train-upload")
    page.wait_for_selector("#review-table tbody tr >> nth=49")
    assert page.locator("#review-table tbody tr").count() == 50
    first = page.locator("#review-table tbody tr").nth(0)
    first.locator("select.decision").select_option("reject")  # a reject waits for its reason
    first.locator("input.reason").fill("labels look wrong")
    first.locator("button.save").click()
    page.locator("#review-table select.decision").nth(1).select_option(index=3)  # relabel
    page.wait_for_selector("#review-table select.decision.saved >> nth=1")
    shot("step3_training_set_review")
    page.click("#train-next")

    # step 4: summary and launch
    page.wait_for_selector("#step-4:not([hidden])")
    page.select_option("#budget", "fast")  # the time budget (train.budget) is the engineer's choice here too
    page.fill("#max-steps", "12")
    page.fill("#run-name", "pii ui run")
    preview = json.loads(page.inner_text("#config-preview"))
    assert preview["metric"] == "pii" and preview["data"]["train_set"].startswith("dataset:")
    assert preview["train"]["max_steps"] == 12 and preview["train"]["budget"] == "fast"
    shot("step4_summary")
    page.click("#launch")
    page.wait_for_url("**/runs/run_*")
    shot("run_started")

    # the run page follows the run live until it is Fine-tuned
    page.wait_for_selector("#run-status[data-status=fine_tuned], #run-status[data-status=failed]", timeout=1200_000)
    assert page.get_attribute("#run-status", "data-status") == "fine_tuned", page.inner_text("#run-failure")
    history = page.inner_text("#run-history")
    assert "Data ready" in history and "Training" in history
    shot("run_fine_tuned")

    # the report (kappa, F1, AUROC, confusion matrix, calibration plot) inside the page
    frame = page.frame_locator("#report-frame")
    frame.locator("body").wait_for()
    report_text = frame.locator("body").inner_text()
    assert "kappa" in report_text.lower() and "auroc" in report_text.lower()
    assert frame.locator("svg").count() >= 2  # confusion matrix + reliability plot
    page.locator("#report").scroll_into_view_if_needed()
    shot("report", full=True)

    # register (confirming when the report shows the evaluator below a baseline), then score pasted text
    run_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    report = page.request.get(f"{server}/v1/runs/{run_id}/report").json()
    below = any(b.get("kappa") is not None and report["student"]["kappa"] < b["kappa"]
                for b in (report.get("baselines") or {}).values())
    page.fill("#register-name", "pii")
    page.click("#register-button")
    if below:  # the warning names both figures; nothing is registered until asked again
        page.wait_for_selector("#register-warning")
        assert "baseline" in page.inner_text("#register-warning")
        shot("register_warning")
        page.click("#register-anyway")
    page.wait_for_url("**/metrics/pii-v1")
    assert "pii-v1" in page.inner_text("#versions")
    shot("metric_registered")
    page.fill("#try-it textarea[data-field=input]", "Please wire the refund to Maria Gonzalez, IBAN DE89 3704 0044 "
                                                     "0532 0130 00, phone +1 415 555 0100.")
    page.click("#try-score")
    page.wait_for_selector("#try-label", timeout=120_000)
    assert page.inner_text("#try-label") in ("true", "false")
    confidence = float(page.inner_text("#try-confidence"))
    assert 0.5 <= confidence <= 1.0
    shot("try_it")
    assert not errors, errors
    assert len(list(shots.glob("*.png"))) >= 12
