"""Helpers shared by the registry, worker and API tests (not a test module)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from assay.registry import LocalExecutor, Registry, Worker
from assay.testing import MockEvaluator, mock_train

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "toxicity"
BINARY_MAP = {"hate_speech": "true", "offensive_language": "true", "neither": "false"}


def jsonl_bytes(name: str, n: int) -> bytes:
    """The first ``n`` rows of an example file (toxicity, 3 classes) as JSONL bytes."""
    lines = (EXAMPLES / name).read_text().splitlines()[:n]
    return ("\n".join(lines) + "\n").encode()


def sample_test_set(n: int = 150) -> bytes:
    return jsonl_bytes("test_set.jsonl", n)


def sample_train_set(n: int = 300) -> bytes:
    return jsonl_bytes("train_set.jsonl", n)


def make_registry(url: str, root: Path, **kw: Any) -> Registry:
    """A registry whose evaluators are mocks (artifacts of assay.testing.mock_train)."""
    return Registry(url, str(root / "artifacts"), load_evaluator=MockEvaluator.from_pretrained, **kw)


def fake_worker(reg: Registry, **train_kw: Any) -> Worker:
    train = functools.partial(mock_train, **train_kw) if train_kw else mock_train
    return Worker(reg, LocalExecutor(train), heartbeat_interval=0.2, stale_after=30)


def run_config(test_id: str, train_id: str | None = None, metric: Any = "toxicity") -> dict[str, Any]:
    data: dict[str, Any] = {"test_set": f"dataset:{test_id}"}
    if train_id:
        data["train_set"] = f"dataset:{train_id}"
    return {"metric": metric, "data": data, "report": {"bootstrap": 0, "baselines": False}}


def add_binary_datasets(reg: Registry, project: str, n_test: int = 150, n_train: int = 300) -> tuple[str, str]:
    """Upload a small test set and training set for the boolean 'toxicity' preset."""
    t = reg.datasets.add(project, sample_test_set(n_test), "test.jsonl", metric="toxicity", label_map=BINARY_MAP)
    tr = reg.datasets.add(project, sample_train_set(n_train), "train.jsonl", metric="toxicity", kind="train",
                          label_map=BINARY_MAP)
    return t.id, tr.id


def finished_run(reg: Registry, project: str = "demo", **train_kw: Any) -> str:
    """A Fine-tuned run (mock training) in ``project``; returns its id."""
    try:
        reg.projects.get(project)
    except Exception:
        reg.projects.create(project)
    t, tr = add_binary_datasets(reg, project)
    run = reg.runs.create(project, run_config(t, tr))
    w = fake_worker(reg, **train_kw)
    out = w.execute(reg.runs.claim(w.worker_id, run_id=run.id))
    assert out.status.value == "fine_tuned", out.failure_reason
    return run.id


def dumps(rows: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


ERROR_KEYS = {"code", "message", "expected", "found", "fix"}


def error_of(resp, status: int, code: str | None = None) -> dict:
    """The API's one error shape, ``{"error": {code, message, expected, found, fix}}``, with this status."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and ERROR_KEYS <= set(body["error"]), body
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


# Reviewed production traffic for retrain tests: a word the training rows never have, labeled by people.
REVIEWED = [(f"zqxreviewed message number {i} from production", "true" if i % 2 == 0 else "false") for i in range(12)]


def add_reviews(store: Any, metric: str = "toxicity", rows: list[tuple[str, str]] = REVIEWED) -> list[int]:
    """Routed verdicts in a monitor ``store``, each with a person's label (the review flow without a monitor run)."""
    from assay.data import row_hash
    from assay.monitor import Verdict

    ids = []
    for text, label in rows:
        tid = f"tr-{row_hash({'input': text})[:12]}"
        v = Verdict(tid, metric, "evaluator", "false", True, score=0.45, confidence=0.55,
                    row={"id": tid, "input": text, "meta": {"trace_id": tid}})
        ids.append(store.add_review(store.add_verdict(v, "review", "uncertain"), label, reviewer="ana"))
    return ids
