"""``assay retrain NAME``: the reviewed verdicts of a registered metric queued as a new run of it, then
``assay register RUN`` (no name) makes the next version."""

from __future__ import annotations

import json

from _registry_util import (
    REVIEWED,
    add_reviews,
    fake_worker,
    finished_run,
    make_registry,
)
from click.testing import CliRunner

from assay.cli import cli
from assay.monitor import Store


def test_retrain_then_register_in_two_commands(tmp_path):
    url = f"sqlite:///{tmp_path / 'assay.db'}"
    reg = make_registry(url, tmp_path)
    reg.projects.create("demo")
    v1 = reg.metrics.register(finished_run(reg), "toxicity")
    store = Store(tmp_path / "monitor.db")
    add_reviews(store)
    store.close()
    where = ["--db", url, "--artifacts", str(tmp_path / "artifacts")]
    runner = CliRunner()
    base = ["retrain", "toxicity", "--monitor-db", str(tmp_path / "monitor.db"), *where]

    # no terminal to ask at and no --yes: nothing is queued
    out = runner.invoke(cli, [*base, "--json"])
    assert out.exit_code == 2 and json.loads(out.stderr)["error"]["code"] == "needs_confirmation"
    assert not [r for r in reg.runs.list() if r.retrain_of]

    # no reviews: a clear error naming where it looked, and no run
    empty = runner.invoke(cli, ["retrain", "toxicity", "--monitor-db", str(tmp_path / "none.db"), *where, "--yes"])
    assert empty.exit_code == 2 and "0 reviewed verdicts" in empty.stderr and "none.db" in empty.stderr
    assert "assay review label" in empty.stderr

    out = runner.invoke(cli, [*base, "--yes", "--json"])
    assert out.exit_code == 0, out.output
    run = json.loads(out.stdout)
    assert run["status"] == "queued" and run["project_id"] == v1.project_id
    assert run["retrain_of"]["version"] == "toxicity-v1" and run["retrain_of"]["reviewed_rows"] == len(REVIEWED)
    assert run["config"]["data"]["extra_train_sets"] == [f"dataset:{run['retrain_of']['reviewed_dataset']}"]

    w = fake_worker(reg)
    assert w.execute(reg.runs.claim(w.worker_id, run_id=run["id"])).status.value == "fine_tuned"
    text = runner.invoke(cli, ["runs", "show", run["id"], *where]).output
    assert "Fine-tuned" in text

    reg_out = runner.invoke(cli, ["register", run["id"], *where, "--json"])  # no NAME: the next version
    assert reg_out.exit_code == 0, reg_out.output
    assert json.loads(reg_out.stdout)["full_name"] == "toxicity-v2"

    # the same reviews again: toxicity-v2 trained on all of them, so nothing is queued (issue 26)
    same = runner.invoke(cli, [*base, "--yes"])
    assert same.exit_code == 2 and "0 new of 12 reviewed verdicts" in same.stderr
    assert "12 already training rows of toxicity-v2" in same.stderr and len(reg.runs.list()) == 2

    # the text form says what comes next; a second retrain starts from the new version
    store = Store(tmp_path / "monitor.db")
    add_reviews(store, rows=[("zqxreviewed one more", "true")])
    store.close()
    again = runner.invoke(cli, [*base, "--yes"])
    assert again.exit_code == 0, again.output
    assert "toxicity-v2's config + 1 new of 13 reviewed verdicts (12 already training rows of toxicity-v2" \
        in again.stdout and "assay register run_" in again.stdout
    reg.close()
