"""Datasets (``reg.datasets``): uploads validated against a metric and stored with their hashes,
and the row review of a training set."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import insert, select

from ..config import ProviderConfig
from ..data import SEED_FRACTION, split_test_set
from ..data._io import detect_format
from ..errors import AssayError, invalid
from ..metrics import MetricSpec, list_presets, load_metric
from ..providers import label_rows, provider_from_config
from ..review import DatasetReviews, check_decision, pick_for_review
from . import _db as t
from ._base import Core, InvalidRows, dumps, loads, new_id, not_found
from ._ingest import ingest, private_temp_dir, split_input
from ._models import Dataset, ReviewItem, RowError, Validated, to_time
from ._projects import Projects

KINDS = ("test", "train", "unlabeled")
DATASET_REF = "dataset:"
ORPHAN_AGE = 60.0  # seconds: a dataset folder without a row younger than this may be an insert under way


def parse_metric(metric: Any) -> MetricSpec:
    """A metric from a preset name, a spec mapping, a JSON/YAML string of one, or a MetricSpec."""
    if isinstance(metric, str) and metric.strip()[:1] == "{":
        try:
            metric = json.loads(metric)
        except json.JSONDecodeError as exc:
            raise AssayError("a metric preset name or a JSON metric spec", f"invalid JSON ({exc.msg})",
                             "send a preset name such as 'toxicity' or a JSON object", code="invalid_metric") from None
    if isinstance(metric, str) and "\n" in metric:
        import yaml

        metric = yaml.safe_load(metric)
    if isinstance(metric, str):

        if metric not in list_presets():
            raise AssayError(f"a preset name ({', '.join(list_presets())}) or an inline metric spec",
                             f"'{metric}'", "pick a preset or send the spec itself", code="invalid_metric")
    return load_metric(metric)


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


class Datasets:
    """Uploaded datasets (``add``, ``get``, ``list``, ``rows``, ``label``) and the row review of a
    training set (``start_review``, ``review_items``, ``review_item_dataset``, ``decide``)."""

    def __init__(self, core: Core, projects: Projects):
        self.core = core
        self.projects = projects
        self.review_store = DatasetReviews(core.tx, core.now, t.review_items, t.review_decisions)

    # --- datasets ---------------------------------------------------------------------------
    def add(self, project: str, data: bytes | Path, filename: str, *, metric: Any, kind: str = "test",
            columns: Mapping[str, str] | None = None, label_map: Mapping[str, str] | None = None,
            name: str | None = None, seed_fraction: float = SEED_FRACTION, split_seed: int = 0,
            validate_only: bool = False) -> Dataset | Validated:
        """Validate an uploaded CSV/JSONL/JSON/Parquet file against ``metric`` and store it.

        Bad rows raise :class:`InvalidRows` listing every problem (nothing is stored); with
        ``validate_only`` the findings come back as a :class:`Validated` instead.
        """
        proj = self.projects.get(project)
        if kind not in KINDS:
            raise AssayError(f"a dataset kind among {list(KINDS)}", f"'{kind}'",
                             "use test for the labeled test set, train for labeled training rows",
                             code="invalid_input")
        spec = parse_metric(metric)
        fname = Path(filename or "upload").name
        fmt = detect_format(Path(fname))
        tmp = private_temp_dir("upload")  # removed below, or at the next start if this process is killed
        try:
            if isinstance(data, Path):  # an upload spooled to disk: never read whole into memory here
                path = data
            else:
                path = tmp / "upload"
                path.write_bytes(data)
            size = path.stat().st_size
            if not size:
                raise AssayError("rows in the uploaded file", f"{fname} is empty", "upload a file with rows",
                                 code="empty_file")
            return self._add_file(proj.id, path, fname, fmt, size, spec=spec, kind=kind, columns=columns,
                                  label_map=label_map, name=name, seed_fraction=seed_fraction,
                                  split_seed=split_seed, validate_only=validate_only, tmp=tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _add_file(self, project_id: str, path: Path, fname: str, fmt: str, size: int, *, spec: MetricSpec,
                  kind: str, columns: Mapping[str, str] | None, label_map: Mapping[str, str] | None,
                  name: str | None, seed_fraction: float, split_seed: int,
                  validate_only: bool, tmp: Path) -> Dataset | Validated:
        rows_file = tmp / "rows.jsonl"
        try:
            v = ingest(path, fname, fmt, spec, labeled=kind != "unlabeled", columns=columns or {},
                       label_map=label_map or {}, rows_out=rows_file)
            split = None
            if v.ok and kind == "test" and v.kept >= 2:
                # the split a training run on this dataset makes (grouped by the shape's default)
                s = split_test_set(split_input(rows_file), spec.shape, seed_fraction=seed_fraction,
                                   split_seed=split_seed)
                split = {"seeds": len(s.seeds), "held_out": len(s.held_out), "group_by": s.group_by}
                del s
            if validate_only:
                return Validated(ok=v.ok, rows=v.kept, dropped_duplicates=v.dropped_duplicates,
                                 label_counts=v.label_counts, warnings=v.warnings,
                                 errors=[RowError(**e) for e in v.errors], split=split, content_hash=v.content_hash)
            if not v.ok:
                raise InvalidRows(fname, v.errors, v.rows_total)
            did = new_id("ds")
            folder = self.core.storage.url("datasets", did)
            sha = _sha256(path)
            try:  # a failed copy or insert leaves no folder behind
                original = self.core.storage.put_file(path, f"{folder}/original{Path(fname).suffix.lower()}")
                location = self.core.storage.put_file(rows_file, f"{folder}/rows.jsonl")
                rows_file.unlink(missing_ok=True)
                with self.core.tx() as conn:
                    conn.execute(insert(t.datasets).values(
                        id=did, project_id=project_id, name=name or Path(fname).stem, kind=kind, format=fmt,
                        filename=fname, content_hash=v.content_hash, file_sha256=sha, size_bytes=size,
                        row_count=v.kept, dropped_duplicates=v.dropped_duplicates,
                        label_counts=dumps(v.label_counts), warnings=dumps(v.warnings), metric=dumps(spec.to_dict()),
                        columns_map=dumps(dict(columns or {})),
                        label_map=dumps({str(k): str(x) for k, x in (label_map or {}).items()}), location=location,
                        original_location=original, created_at=self.core.now()))
            except BaseException:
                self.core.storage.remove_dir(folder)
                raise
        finally:
            rows_file.unlink(missing_ok=True)
        ds = self.get(did)
        ds.split = split
        return ds

    def remove_orphans(self, older_than: float = ORPHAN_AGE) -> list[Path]:
        """Remove the folders under ``datasets/`` that no dataset row names (a copy or an insert that
        failed, or a process killed between the two), untouched for ``older_than`` seconds (a younger
        one may be an insert under way in another process). Local storage only; returns them."""
        storage = self.core.storage
        root = Path(storage.root) / "datasets"
        if not storage.local or not root.is_dir():
            return []
        old = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
            try:
                touched = max([folder.stat().st_mtime] + [f.stat().st_mtime for f in folder.iterdir()])
            except OSError:
                continue
            if time.time() - touched >= older_than:
                old.append(folder)
        if not old:
            return []
        with self.core.tx() as conn:  # read after the folders: an insert committed by now is seen
            known = set(conn.execute(select(t.datasets.c.id)).scalars().all())
        removed = [f for f in old if f.name not in known]
        for folder in removed:
            shutil.rmtree(folder, ignore_errors=True)
        return removed

    def get(self, dataset_id: str) -> Dataset:
        with self.core.tx() as conn:
            row = conn.execute(select(t.datasets).where(t.datasets.c.id == dataset_id)).mappings().first()
        if row is None:
            raise not_found("dataset", dataset_id, "list datasets with GET /v1/projects/{project}/datasets")
        return self._dataset(row)

    def list(self, project: str) -> list[Dataset]:
        pid = self.projects.get(project).id
        with self.core.tx() as conn:
            rows = conn.execute(select(t.datasets).where(t.datasets.c.project_id == pid)
                                .order_by(t.datasets.c.created_at)).mappings().all()
        return [self._dataset(r) for r in rows]

    def rows(self, dataset_id: str, *, limit: int | None = None, apply_review: bool = False
             ) -> list[dict[str, Any]]:
        """The stored canonical rows; with ``apply_review`` rejected rows are dropped, relabelled rows
        carry the reviewer's label, and the rows regenerated in place of rejected ones (review items past
        the file's rows, see :meth:`replace_item`) are added unless rejected in turn."""
        ds = self.get(dataset_id)
        text = self.core.storage.read_bytes(ds.location).decode("utf-8")
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        if apply_review:
            items = self.review_items(dataset_id)
            decided = {i.position: i for i in items if i.decision}
            added = [{**i.row, "label": i.proposed_label} for i in items if i.position >= len(rows)]
            kept = []
            for pos, r in enumerate(rows + added):
                item = decided.get(pos)
                if item and item.decision == "reject":
                    continue
                if item and item.decision == "relabel" and item.label:
                    r = {**r, "label": item.label}
                kept.append(r)
            rows = kept
        return rows[:limit] if limit is not None else rows

    @staticmethod
    def _dataset(row: Mapping[str, Any]) -> Dataset:
        return Dataset(
            id=row["id"], project_id=row["project_id"], name=row["name"], kind=row["kind"], format=row["format"],
            filename=row["filename"], content_hash=row["content_hash"], file_sha256=row["file_sha256"],
            size_bytes=row["size_bytes"], rows=row["row_count"], dropped_duplicates=row["dropped_duplicates"],
            label_counts=loads(row["label_counts"], {}), warnings=loads(row["warnings"], []),
            metric=loads(row["metric"]), columns=loads(row["columns_map"], {}), label_map=loads(row["label_map"], {}),
            location=row["location"], original_location=row["original_location"],
            created_at=to_time(row["created_at"]))

    def label(self, dataset_id: str, judge: Any, *, name: str | None = None, max_rows: int = 5000) -> Dataset:
        """Label a dataset's rows with the judge (the metric's prompt) and store the result as a
        new ``train`` dataset; rows the judge could not label are left out and counted."""
        from pydantic import ValidationError


        if self.core.providers is not None:
            judge = self.core.providers.resolve(judge, "judge")
        try:
            judge_cfg = ProviderConfig.model_validate(judge)
        except ValidationError as exc:
            raise invalid(exc, "a judge model such as 'openai/gpt-4o-mini' (or a provider config)",
                          "fix the judge ({msg})", found=repr(judge), code="invalid_config") from None
        ds = self.get(dataset_id)
        if not ds.metric:
            raise AssayError("a dataset validated against a metric", f"{dataset_id} has none",
                             "upload it again with a metric", code="invalid_input")
        spec = load_metric(ds.metric)
        rows = self.rows(dataset_id)
        if len(rows) > max_rows:
            raise AssayError(f"at most {max_rows} rows to label in one request", f"{len(rows)}",
                             "upload a smaller sample", code="too_large")
        result = label_rows(spec, rows, provider_from_config(judge_cfg))
        labeled = result.labeled
        if not labeled:
            raise AssayError("rows the judge could label", f"0 of {len(rows)} ({result.summary()})",
                             "check the judge model and its API key", code="judge_failed")
        body = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in labeled).encode()
        out = self.add(ds.project_id, body, f"{Path(ds.filename).stem}-judged.jsonl", metric=spec.to_dict(),
                       kind="train", name=name or f"{ds.name} (judged)")
        assert isinstance(out, Dataset)
        dropped = len(rows) - len(labeled)
        if dropped:
            out.warnings.append(f"the judge left {dropped} of {len(rows)} rows unlabeled; they were dropped")
        return out

    # --- review (the rows and decisions are kept by ``assay.review``'s store, ``self.review_store``) ---
    def start_review(self, dataset_id: str, n: int = 50) -> list[ReviewItem]:
        """Pick ``n`` rows of a dataset for a person to check (the same rows every time)."""
        self.get(dataset_id)
        if not self.review_store.has_items(dataset_id):
            rows = self.rows(dataset_id)
            picked = {pos: rows[pos] for pos in pick_for_review(dataset_id, len(rows), n)}
            self.review_store.add_items(dataset_id, picked, lambda: new_id("rev"))
        return self.review_items(dataset_id)

    def review_items(self, dataset_id: str) -> list[ReviewItem]:
        return [ReviewItem(**item) for item in self.review_store.items(dataset_id)]

    def review_item_dataset(self, item_id: str) -> str | None:
        """The dataset a review item belongs to (None: no such item)."""
        return self.review_store.dataset_of(item_id)

    def decide(self, item_id: str, decision: str, *, label: str | None = None, reviewer: str = "",
               note: str = "") -> ReviewItem:
        """Record a reviewer's decision on one item (the latest decision counts)."""
        check_decision(decision)
        dataset_id = self.review_store.dataset_of(item_id)
        if dataset_id is None:
            raise not_found("review item", item_id, "start a review of the dataset first")
        labels = (self.get(dataset_id).metric or {}).get("labels") or []
        if decision == "relabel" and label not in labels:
            raise AssayError(f"a new label among {labels}", f"'{label}'", "pick one of the metric's labels",
                             code="invalid_input")
        self.review_store.record([item_id], decision, label=label, reviewer=reviewer, note=note)
        return next(i for i in self.review_items(dataset_id) if i.id == item_id)

    def replace_item(self, item_id: str, row: Mapping[str, Any], *, reason: str, reviewer: str = "") -> ReviewItem:
        """Reject a reviewed row with ``reason`` and put ``row`` (generated in its place) up for review as a
        new item after the dataset's rows: training on the dataset (``rows(apply_review=True)``) uses it
        unless it is rejected in turn. Returns the new item."""
        if not reason.strip():
            raise AssayError("a reason for regenerating the row", "none", "say what is wrong with it",
                             code="invalid_input")
        dataset_id = self.review_store.dataset_of(item_id)
        if dataset_id is None:
            raise not_found("review item", item_id, "start a review of the dataset first")
        last = max([self.get(dataset_id).rows - 1] + [i.position for i in self.review_items(dataset_id)])
        self.review_store.record([item_id], "reject", reviewer=reviewer, note=reason.strip())
        self.review_store.add_items(dataset_id, {last + 1: dict(row)}, lambda: new_id("rev"))
        return next(i for i in self.review_items(dataset_id) if i.position == last + 1)
