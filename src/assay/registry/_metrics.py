"""Registered metrics (``reg.metrics``): a Fine-tuned run frozen as ``name-vN`` (a copy of its
artifact, with its hashes), and scoring rows with it (each evaluator is loaded once and kept)."""

from __future__ import annotations

import re
import threading
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from ..data import validate_rows
from ..errors import AssayError
from ..evaluator._artifact import INFO_FILE, EvaluatorInfo
from ..metrics import load_metric
from ..report import Report
from . import _db as t
from ._base import Core, InvalidRows, dumps, loads, new_id, not_found
from ._models import Metric, MetricVersion, ScoreResult, Status, to_time
from ._projects import Projects
from ._runs import Runs

NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")
VERSIONED = re.compile(r"^(?P<name>.+)-v(?P<version>\d+)$")
OPERATORS = (">=", ">")
MAX_SCORE_ROWS = 1000


def open_version(path: str | Any, version: MetricVersion | None = None, *, precision: str = "auto",
                 loader: Callable[[str], Any] | None = None) -> Any:
    """The evaluator of an artifact folder (``loader(path)``, default ``Evaluator.from_pretrained`` at
    ``precision``) deciding as the registered ``version`` does: its threshold and operator replace the
    evaluator's (``Calibration.with_decision``; binary metrics). The one place a registered decision is
    applied: the registry's scoring, ``assay.monitor`` and the CLI (``monitor._checks.open_evaluator``)."""
    if loader is not None:
        ev = loader(str(path))
    else:
        from ..evaluator import Evaluator

        ev = Evaluator.from_pretrained(path, precision=precision)
    if version is not None and version.threshold is not None and ev.metric.is_binary:
        ev.calibration = ev.calibration.with_decision(float(version.threshold), version.operator or ">=")
    return ev


def _summary(report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Headline figures of a report (see assay.report.evaluate, read as ``assay.report.Report``) for
    listings; None without a report (or with one its readers would refuse)."""

    if not report:
        return None
    try:
        rep = Report.from_dict(report)
    except AssayError:
        return None
    s = rep.student
    out = {k: getattr(s, k) for k in ("kappa", "f1_macro", "accuracy", "auroc", "ece") if k in s.model_fields_set}
    if rep.n is not None:
        out["n_eval"] = rep.n
    best = {name: m.kappa for name, m in (rep.baselines or {}).items()}
    if best:
        out["baseline_kappa"] = best
    return out or None


class Metrics:
    """``register`` a Fine-tuned run, ``get``/``list`` metrics, and score with them (``score``, or
    ``check_score_rows`` then ``score_rows``, as the server's batcher does); ``evaluator`` and
    ``verify_artifact`` load and check a registered version's artifact."""

    _eval_lock = threading.Lock()
    max_evaluators = 8  # evaluators kept in memory at once

    def __init__(self, core: Core, projects: Projects, runs: Runs, *,
                 load_evaluator: Callable[[str], Any] | None = None):
        self.core = core
        self.projects = projects
        self.runs = runs
        self._load_evaluator = load_evaluator
        self._evaluators: dict[str, Any] = {}

    def unload(self) -> None:
        """Forget the loaded evaluators (the next score loads them again)."""
        self._evaluators.clear()

    def register(self, run_id: str, name: str | None = None, *, threshold: float | None = None, operator: str = ">=",
                 description: str | None = None, confirm: bool = False) -> Metric:
        """Freeze a Fine-tuned run as the next version of metric ``name`` (``name-v1``, ``-v2``...).

        A name belongs to the project that first registered it, and all its versions share one
        label set. The artifact is copied, hashed and never changed afterwards. When the run's report
        shows the evaluator's held-out kappa below a baseline's (e.g. TF-IDF), registering needs
        ``confirm=True`` (error code ``needs_confirmation`` otherwise, naming both figures). Without
        ``name``, a retrain from reviews registers as the next version of the metric it retrained.
        """
        if name is None:
            name = self._retrained_name(run_id)
        if not isinstance(name, str) or not NAME.match(name) or VERSIONED.match(name):
            raise AssayError("a metric name of lowercase letters, digits, '_' or '-' (at most 63, no -vN suffix)",
                             f"'{name}'", "choose a name like 'toxicity' (versions are added as -v1, -v2)",
                             code="invalid_input")
        if operator not in OPERATORS:
            raise AssayError(f"an operator among {list(OPERATORS)}", f"'{operator}'",
                             "use '>=' (positive when score >= threshold)", code="invalid_input")
        run = self.runs.get(run_id, history=False)
        if run.status == Status.registered:
            raise AssayError("a run not registered yet", f"run {run_id} is already registered as {run.registered_as}",
                             f"score with {run.registered_as}, or train a new run", code="already_registered")
        if run.status != Status.fine_tuned:
            raise AssayError("a Fine-tuned run", f"run {run_id} is {run.status_title}",
                             "wait until the run is Fine-tuned", code="invalid_status")
        if not confirm:
            self._refuse_below_baseline(run_id)
        spec = load_metric(run.config["metric"])
        labels = list(spec.labels)
        if threshold is not None and not (len(labels) == 2 and 0.0 < float(threshold) < 1.0):
            raise AssayError("a threshold between 0 and 1, for a binary metric", f"{threshold} for labels {labels}",
                             "leave threshold empty to use the evaluator's calibrated threshold", code="invalid_input")
        self._check_name(name, run.project_id, labels)
        mid = new_id("met")
        location = self.core.storage.put_dir(self.core.storage.local_dir(run.artifact_location or ""),
                                        self.core.storage.url("metrics", mid))
        digest = self.core.storage.dir_sha256(location)
        files = self.core.storage.file_hashes(location)
        if threshold is None:
            threshold = self._evaluator_info(location).threshold if len(labels) == 2 else None
        summary = run.metrics_summary
        try:
            with self.core.tx() as conn:
                row = self.runs._locked(conn, run_id)
                self._check_name(name, run.project_id, labels, conn)
                version = int(conn.execute(select(func.max(t.metrics.c.version)).where(t.metrics.c.name == name))
                              .scalar() or 0) + 1
                conn.execute(insert(t.metrics).values(
                    id=mid, name=name, version=version, full_name=f"{name}-v{version}", project_id=run.project_id,
                    run_id=run_id, description=description if description is not None else spec.description,
                    spec=dumps(spec.to_dict()), labels=dumps(labels), threshold=threshold, operator=operator,
                    artifact_location=location, artifact_sha256=digest, summary=dumps(summary) if summary else None,
                    immutable=1, created_at=self.core.now(), artifact_files=dumps(files)))
                self.runs._set_status(conn, row, Status.registered, f"registered as {name}-v{version}")
        except IntegrityError:
            raise AssayError("one registration at a time for a name", f"'{name}' was registered concurrently",
                             "retry the registration", code="conflict") from None
        return self.get(f"{name}-v{version}")

    def _retrained_name(self, run_id: str) -> str:
        origin = self.runs.get(run_id, history=False).retrain_of or {}
        if not origin.get("metric"):
            raise AssayError("a metric name to register the run under", f"none, and run {run_id} is not a retrain",
                             "pass a name, e.g. `assay register RUN_ID toxicity`", code="invalid_input")
        return str(origin["metric"])

    def _check_name(self, name: str, project_id: str, labels: list[str], conn: Any = None) -> None:
        def check(c: Any) -> None:
            first = c.execute(select(t.metrics.c.project_id, t.metrics.c.labels).where(t.metrics.c.name == name)
                              .order_by(t.metrics.c.version).limit(1)).first()
            if first is None:
                return
            if first[0] != project_id:  # names are global; never say which project holds it
                raise AssayError("a metric name not used by another project", f"the name '{name}'",
                                 "the name is not available; pick another", code="name_taken")
            if loads(first[1]) != labels:
                raise AssayError(f"the labels of the earlier versions of '{name}' ({loads(first[1])})",
                                 f"labels {labels}", "register under a new name: versions must keep one label set",
                                 code="name_taken")
        if conn is not None:
            check(conn)
        else:
            with self.core.tx() as c:
                check(c)

    def _evaluator_info(self, location: str) -> EvaluatorInfo:
        import json

        try:
            data = json.loads(self.core.storage.read_bytes(f"{location}/{INFO_FILE}"))
        except AssayError:
            raise AssayError(f"an evaluator artifact with {INFO_FILE}", f"none at {location}",
                             "the run did not save its evaluator; train again", code="invalid_artifact") from None
        return EvaluatorInfo.from_dict(data, f"{location}/{INFO_FILE}")

    # --- reading ----------------------------------------------------------------------------
    def below_baseline(self, run_id: str) -> dict[str, Any] | None:
        """{student, baseline, baseline_kappa, student_kappa} when the run's report shows the evaluator's
        held-out kappa below a baseline's; None otherwise (or when the report has no such figures)."""

        try:
            report = Report.from_dict(self.runs.report(run_id, "json"))
        except AssayError:
            return None
        student = report.kappa
        kappas = [(n, b.kappa_value) for n, b in (report.baselines or {}).items() if b.kappa_value is not None]
        best = max(kappas, key=lambda x: x[1], default=None)
        if student is None or best is None or student >= best[1]:
            return None
        return {"student_kappa": student, "baseline": best[0], "baseline_kappa": best[1]}

    def _refuse_below_baseline(self, run_id: str) -> None:
        weak = self.below_baseline(run_id)
        if weak:
            raise AssayError("an evaluator at least as good as its baselines, or a confirmed registration",
                             f"run {run_id}'s held-out kappa {weak['student_kappa']:.3f} is below the "
                             f"{weak['baseline']} baseline's {weak['baseline_kappa']:.3f} in its report",
                             "improve the evaluator (more or better training rows), or register anyway: "
                             "assay register --yes, or \"confirm\": true in the API", code="needs_confirmation")

    def get(self, name: str) -> Metric:
        """A metric by name (its latest version) or by ``name-vN``; lists every version."""
        m = VERSIONED.match(name)
        with self.core.tx() as conn:
            base = name
            if m and conn.execute(select(t.metrics.c.id).where(t.metrics.c.full_name == name)).first():
                base = m.group("name")
            rows = conn.execute(select(t.metrics).where(t.metrics.c.name == base).order_by(t.metrics.c.version)
                                ).mappings().all()
        if not rows:
            raise not_found("metric", name, "list metrics with GET /v1/metrics, or register a Fine-tuned run")
        versions = [self._version(r) for r in rows]
        chosen = next((v for v in versions if v.full_name == name), versions[-1])
        return Metric(**chosen.model_dump(), versions=versions)

    def list(self, project: str | None = None) -> list[Metric]:
        q = select(t.metrics.c.name).distinct()
        if project:
            q = q.where(t.metrics.c.project_id == self.projects.get(project).id)
        with self.core.tx() as conn:
            names = sorted(conn.execute(q).scalars().all())
        return [self.get(n) for n in names]

    @staticmethod
    def _version(r: Mapping[str, Any]) -> MetricVersion:
        return MetricVersion(
            id=r["id"], name=r["name"], version=r["version"], full_name=r["full_name"], project_id=r["project_id"],
            run_id=r["run_id"], description=r["description"], spec=loads(r["spec"], {}), labels=loads(r["labels"], []),
            threshold=r["threshold"], operator=r["operator"], artifact_location=r["artifact_location"],
            artifact_sha256=r["artifact_sha256"], summary=loads(r["summary"]), immutable=bool(r["immutable"]),
            created_at=to_time(r["created_at"]))

    # --- scoring ----------------------------------------------------------------------------
    def evaluator(self, version: MetricVersion) -> Any:
        """The metric version's evaluator, loaded on first use and kept."""
        ev = self._evaluators.get(version.full_name)
        if ev is not None:
            return ev
        with self._eval_lock:
            ev = self._evaluators.get(version.full_name)
            if ev is None:
                while len(self._evaluators) >= self.max_evaluators:  # drop the least recently loaded
                    self._evaluators.pop(next(iter(self._evaluators)))
                self.verify_artifact(version)
                path = str(self.core.storage.local_dir(version.artifact_location))
                ev = open_version(path, version, loader=self._load_evaluator)  # deciding as registered
                self._evaluators[version.full_name] = ev
        return ev

    def verify_artifact(self, version: MetricVersion) -> None:
        """Check a registered version's files against the hashes recorded at registration;
        any change (edited, added or removed file) raises ``artifact_modified`` naming the file."""
        with self.core.tx() as conn:
            recorded = loads(conn.execute(select(t.metrics.c.artifact_files).where(t.metrics.c.id == version.id))
                             .scalar())
        location = version.artifact_location
        fix = (f"restore the artifact of {version.full_name} from a backup, or register the run's artifact again "
               "as a new version; scoring with it is refused")
        if not recorded:  # registered before per-file hashes: the whole-folder hash only
            if self.core.storage.dir_sha256(location) != version.artifact_sha256:
                raise AssayError(f"the files of {version.full_name} as registered (sha256 "
                                 f"{version.artifact_sha256[:12]})", f"a changed file under {location}", fix,
                                 code="artifact_modified")
            return
        now = self.core.storage.file_hashes(location)
        changed = sorted(f for f in recorded if now.get(f) != recorded[f]) + sorted(set(now) - set(recorded))
        if changed:
            what = "missing" if changed[0] not in now else ("added" if changed[0] not in recorded else "changed")
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            raise AssayError(f"the files of {version.full_name} as registered (sha256 {version.artifact_sha256[:12]})",
                             f"{location}/{changed[0]} {what} since registration{more}", fix,
                             code="artifact_modified")

    def check_score_rows(self, version: MetricVersion, rows: Sequence[Any]) -> list[dict[str, Any]]:
        """Rows as dicts (a bare string is the row's input), validated for the metric's shape."""
        if not isinstance(rows, (list, tuple)) or not rows:
            raise AssayError("a non-empty list of rows", f"{type(rows).__name__} of {len(rows or [])}",
                             "send {\"rows\": [{\"input\": \"...\"}]}", code="invalid_input")
        if len(rows) > MAX_SCORE_ROWS:
            raise AssayError(f"at most {MAX_SCORE_ROWS} rows per request", f"{len(rows)}",
                             "split the batch", code="invalid_input")
        out = []
        for i, r in enumerate(rows):
            if isinstance(r, str):
                r = {"input": r}
            if not isinstance(r, Mapping):
                raise AssayError("each row as an object (or a string for its input)",
                                 f"a {type(r).__name__} at position {i}", "send {\"input\": \"...\"}",
                                 code="invalid_input")
            r = dict(r)
            r.setdefault("id", str(i))
            r["id"] = str(r["id"])
            r.pop("label", None)
            out.append(r)
        spec = load_metric(version.spec)
        v = validate_rows(out, spec, labeled=False, source="the request")
        if not v.ok:
            raise InvalidRows("the request", v.errors, len(out))
        return out

    def score_rows(self, version: MetricVersion, rows: Sequence[dict[str, Any]]) -> list[ScoreResult]:
        """Score already-checked rows (the server's batcher calls this with many requests' rows)."""
        ev = self.evaluator(version)  # deciding with the version's threshold and operator (open_version)
        results = []
        for s in ev.score(list(rows)):
            d = s.to_dict() if hasattr(s, "to_dict") else dict(s)
            probs = {str(k): float(x) for k, x in (d.get("probabilities") or {}).items()}
            label = d["label"]
            results.append(ScoreResult(label=label, score=float(d["score"]),
                                       confidence=float(probs.get(label, d.get("confidence", 0.0))),
                                       probabilities=probs, tokens=int(d.get("tokens") or 0),
                                       truncated=bool(d.get("truncated"))))
        return results

    def score(self, name: str, rows: Sequence[Any]) -> list[ScoreResult]:
        """Score rows with a registered metric (``name`` = latest version, or ``name-vN``)."""
        version = self.get(name)
        return self.score_rows(version, self.check_score_rows(version, rows))
