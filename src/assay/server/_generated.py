"""Generated training sets behind the server (the web UI's generate path): rows generated from a test
set's seed rows by a generator and labeled by a judge, both chosen by the server's provider names, and
stored as a training dataset whose review sample a person decides before any training starts
(``POST /v1/datasets/{id}/generate``); one sampled row regenerated with the reviewer's reason in its
place (``POST /v1/review/{item_id}/regenerate``).

The split is the run's (``data.split_test_set`` with the run's seed fraction and split seed): only the
seeds are shown to the generator, the held-out rows only filter out generated rows that repeat them.
"""

from __future__ import annotations

import json
import shutil
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import GenerateConfig, ProviderConfig, config_from_dict
from ..data import SEED_FRACTION, row_hash, split_test_set
from ..errors import AssayError, invalid
from ..metrics import MetricSpec, load_metric
from ..registry import Dataset, Registry, ReviewItem
from ..registry._ingest import private_temp_dir
from ..synth import STRATEGIES, generate_training_set

MAX_GENERATED_ROWS = 5000  # rows one request generates (the request waits for them)
# Generate / regenerate requests running at once in this server process. Each holds one of the server's worker
# threads for as long as the providers take (minutes for thousands of rows): without a bound, a few clicks (or
# a client retrying a timed-out request) would take every thread and the server would answer nothing else.
MAX_GENERATING = 2
_GENERATING = threading.BoundedSemaphore(MAX_GENERATING)
REGENERATE_ROWS = 4  # rows asked for when one row is regenerated (the filters and the judge drop some)
OWN_LABELS = "no judge: the generator labelled its own rows (choose a judge to have every row checked)"


class GenerateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generate: str | dict[str, Any] = Field(description="the generator: one of the server's providers by name "
                                                       "(GET /v1/providers), optionally with generation settings")
    judge: str | dict[str, Any] | None = Field(None, description="the judge that labels every generated row: one "
                                                                 "of the server's providers by name (none: the "
                                                                 "generator labels its own rows, and says so)")
    target_size: int = Field(2000, ge=10, le=MAX_GENERATED_ROWS)
    seed_fraction: float = Field(SEED_FRACTION, gt=0, lt=1, description="the run's data.seed_fraction")
    split_seed: int = Field(0, description="the run's data.split_seed")
    name: str | None = Field(None, max_length=200)


class RegenerateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, description="what is wrong with the row (told to the "
                                                                   "generator; stored as the reject's reason)")
    test_set: str = Field(min_length=1, max_length=100, description="the test set the rows were generated from")
    generate: str | dict[str, Any]
    judge: str | dict[str, Any] | None = None
    seed_fraction: float = Field(SEED_FRACTION, gt=0, lt=1)
    split_seed: int = 0
    reviewer: str = Field("", max_length=200)


def _resolve(reg: Registry, value: Any, where: str) -> dict[str, Any]:
    resolved = reg.providers.resolve(value, where, generate=where == "generate") if reg.providers is not None else (
        {"model": value} if isinstance(value, str) else dict(value))
    model = GenerateConfig if where == "generate" else ProviderConfig
    try:
        model.model_validate({**resolved, "target_size": 10} if where == "generate" else resolved)
    except ValidationError as exc:
        raise invalid(exc, f"a {where}: one of the server's providers by name (GET /v1/providers), with valid "
                      "settings", f"fix the {where}", found="{where}: {msg}", code="invalid_config",
                      under=where) from None
    return resolved


def _split(reg: Registry, test: Dataset, seed_fraction: float, split_seed: int) -> tuple[MetricSpec, Any]:
    if test.kind != "test" or not test.metric:
        raise AssayError("a labeled test set (kind test) to generate from", f"{test.id} is {test.kind}",
                         "upload the labeled test set first", code="invalid_input")
    spec = load_metric(test.metric)
    split = split_test_set(reg.datasets.rows(test.id), spec.shape, seed_fraction=seed_fraction, split_seed=split_seed)
    if not split.seeds:
        raise AssayError("seed rows to generate from", "none", "raise the seed fraction", code="too_few_rows")
    return spec, split


@contextmanager
def generation_slot() -> Iterator[None]:
    """One of the ``MAX_GENERATING`` generation slots for the block; none free: 409 ``conflict`` at once (the
    request never queues behind another, holding a thread while it waits)."""
    if not _GENERATING.acquire(blocking=False):
        raise AssayError(f"at most {MAX_GENERATING} generations running at once on this server",
                         f"{MAX_GENERATING} running", "wait for one to finish, then send the request again",
                         code="conflict")
    try:
        yield
    finally:
        _GENERATING.release()


def _generate(spec: MetricSpec, split: Any, generate: Mapping[str, Any], judge: Mapping[str, Any] | None,
              **settings: Any) -> Any:
    """``synth.generate_training_set`` in a generation slot (:func:`generation_slot`), in a folder of its own
    (removed after)."""
    with generation_slot():
        tmp = private_temp_dir("run")  # removed below, or at the next start if this process is killed
        try:
            cfg = config_from_dict({"metric": spec.to_dict(), "data": {"test_set": "dataset"},
                                    "generate": {**generate, **settings, "output": str(tmp / "data")},
                                    "judge": dict(judge) if judge else None, "output": str(tmp / "out")},
                                   source="the generate request")
            return generate_training_set(cfg, split.seeds, split.held_out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def generate_dataset(reg: Registry, test: Dataset, body: GenerateIn) -> Dataset:
    """Generate ``body.target_size`` rows from the test set's seeds and store them as a training dataset
    of its project (the generation's warnings in ``warnings``)."""
    gen = _resolve(reg, body.generate, "generate")
    judge = _resolve(reg, body.judge, "judge") if body.judge is not None else None
    spec, split = _split(reg, test, body.seed_fraction, body.split_seed)
    result = _generate(spec, split, gen, judge, target_size=body.target_size, review_size=0)
    if not result.rows:
        raise AssayError("generated rows the filters and the judge kept", "none", "check the generator and judge",
                         code="generation_failed")
    text = "".join(_jsonl(r) for r in result.rows).encode()
    name = body.name or f"{test.name} generated by {_name(body.generate)}" + (
        f", judged by {_name(body.judge)}" if body.judge is not None else "")
    out = reg.datasets.add(test.project_id, text, "generated.jsonl", metric=spec.to_dict(), kind="train", name=name)
    assert isinstance(out, Dataset)
    out.warnings += list(result.summary().get("warnings") or []) + ([] if judge else [OWN_LABELS])
    return out


def regenerate_item(reg: Registry, item_id: str, test: Dataset, body: RegenerateIn) -> ReviewItem:
    """Reject a reviewed generated row with ``body.reason`` and generate one in its place (the same label,
    the same strategy, the reason told to the generator); the new row is a new review item."""
    dataset_id = reg.datasets.review_item_dataset(item_id)
    items = reg.datasets.review_items(dataset_id or "")
    item = next((i for i in items if i.id == item_id), None)
    if item is None or dataset_id is None:
        raise AssayError("a review item", f"'{item_id}'", "list them with GET /v1/datasets/{id}/review",
                         code="not_found")
    if any(_lineage(i.row).get("replaces") == item_id for i in items):
        raise AssayError("a row not regenerated yet", f"{item_id} was regenerated already",
                         "decide (or regenerate) the row that replaced it", code="conflict")
    if test.project_id != reg.datasets.get(dataset_id).project_id:
        raise AssayError("the test set the rows were generated from (same project)", f"{test.id}",
                         "send the test set of this project", code="invalid_input")
    gen = _resolve(reg, body.generate, "generate")
    judge = _resolve(reg, body.judge, "judge") if body.judge is not None else None
    spec, split = _split(reg, test, body.seed_fraction, body.split_seed)
    label = item.proposed_label or item.row.get("label")
    strategy = _lineage(item.row).get("strategy")
    settings: dict[str, Any] = {"target_size": REGENERATE_ROWS, "label_distribution": {label: 1.0}, "review_size": 0,
                                "feedback": [*gen.get("feedback", []), body.reason],
                                "seed": int(gen.get("seed", 0)) + len(items)}
    if strategy in STRATEGIES:
        settings["strategies"] = {strategy: 1.0}
    result = _generate(spec, split, gen, judge, **settings)
    taken = {row_hash(r) for r in reg.datasets.rows(dataset_id)} | {row_hash(i.row) for i in items}
    new = next((r for r in result.rows if r.get("label") == label and row_hash(r) not in taken), None)
    if new is None:
        raise AssayError(f"a new '{label}' row the filters and the judge kept", "none",
                         "try again, or reject the row instead", code="generation_failed")
    meta = dict(new.get("meta") or {})
    meta["lineage"] = {**(meta.get("lineage") or {}), "replaces": item_id, "feedback": body.reason}
    return reg.datasets.replace_item(item_id, {**new, "meta": meta}, reason=body.reason, reviewer=body.reviewer)


def _lineage(row: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = row.get("meta") if isinstance(row.get("meta"), Mapping) else {}
    lineage = meta.get("lineage")
    return lineage if isinstance(lineage, Mapping) else {}


def _name(value: Any) -> str:
    return str(value.get("model") if isinstance(value, Mapping) else value)


def _jsonl(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, default=str) + "\n"
