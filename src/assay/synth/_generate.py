"""``generate_training_set``: seed rows -> generator calls -> filters -> judge -> training rows.

Only the seed rows are ever shown to the generator; the held-out rows are used for one thing,
removing generated rows that (nearly) repeat one of them. Rounds top up what the filters and
the judge removed, up to ``max_rounds``. Every row keeps its lineage in ``meta.lineage``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import AssayError
from ..providers import Completion, ProviderError, provider_from_config
from ..review import ReviewLog
from ._filter import RowFilter, to_row
from ._plan import Call, SeedPicker, _rng, label_targets, plan_calls
from ._prompts import build_prompt, parse_rows
from ._report import REPORT_FILE, TRAIN_FILE, build_report, write_outputs, write_report
from ._reuse import fingerprint, previous_rows

Status = Callable[[str, "float | None", str], None]
MAX_TOP_UP = 4.0  # a top-up round asks for at most this many times the missing rows


@dataclass
class GenerationResult:
    """The generated training rows, the data report, and where the files went."""

    rows: list[dict[str, Any]]
    report: dict[str, Any]
    data_dir: Path
    files: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The report's headline figures (what `assay generate` prints and the artifact records)."""
        r = self.report
        keys = ("rows", "target_size", "label_counts", "short_by", "dropped", "relabelled", "calls",
                "judge_agreement", "distribution", "cost", "warnings", "files")
        out = {k: r.get(k) for k in keys}
        out["distribution"] = {k: (r.get("distribution") or {}).get(k) for k in ("ratio", "warning", "warning_below")}
        out["cost"] = {k: (r.get("cost") or {}).get(k) for k in
                       ("total_usd", "input_tokens", "output_tokens", "requests", "cache_hits", "priced")}
        return out

    def to_dict(self) -> dict[str, Any]:
        return self.report


class _Progress:
    """Thread-safe, throttled on_status("generating", fraction, message) with rows, cost and ETA."""

    def __init__(self, on_status: Status | None, target: int, cost: Callable[[], float]):
        self.on_status = on_status
        self.target = target
        self.cost = cost
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.last = 0.0
        self.total = 0
        self.done = 0
        self.rows = 0
        self.phase = ""
        self.span = (0.0, 0.0)  # rows this phase is expected to add: (already counted, phase share)

    def plan(self, units: int, phase: str, missing: int = 0, part: int = 0) -> None:
        """A new phase of ``units`` steps; ``part`` 0/1 = generating/judging ``missing`` rows."""
        with self.lock:
            self.total, self.done, self.phase = max(1, units), 0, phase
            self.span = (missing * 0.5 * part, missing * 0.5)
        self.tick(0, force=True)

    def tick(self, n: int = 1, force: bool = False) -> None:
        if self.on_status is None:
            return
        with self.lock:
            self.done += n
            now = time.monotonic()
            if not force and now - self.last < 1.0 and self.done < self.total:
                return
            self.last = now
            step = min(1.0, self.done / self.total)
            est = self.rows + self.span[0] + self.span[1] * step
            frac = min(1.0, est / self.target) if self.target else 1.0
            elapsed = now - self.start
            eta = f", ETA {elapsed / frac * (1 - frac):.0f}s" if 0 < frac < 1 else ""
            msg = (f"{self.phase} {self.done}/{self.total}, {self.rows}/{self.target} rows kept, "
                   f"${self.cost():.4f} so far{eta}")
            self.on_status("generating", round(frac, 4), msg)


def generate_training_set(config: Any, seeds: list[dict[str, Any]], held_out: list[dict[str, Any]],
                          on_status: Status | None = None) -> GenerationResult:
    """Generate ``config.generate.target_size`` labeled rows from ``seeds`` and write them to
    ``config.data_dir()`` (train.jsonl, data_report.json/.md, review_sample.jsonl, dropped.jsonl).

    A set already there from the same settings is kept, less the rows a reviewer rejected (see
    ``_reuse``): only the missing rows are generated."""
    if config.generate is None:
        raise AssayError("a `generate:` section in the config", "none", "add generate: {model: provider/model}",
                         code="invalid_config")
    metric = config.metric_spec()
    seeds = [dict(s) for s in seeds if s.get("label") in metric.labels]
    if not seeds:
        raise AssayError("labeled seed rows to generate from", "none", "add labeled rows to data.test_set",
                         code="too_few_rows")
    run = _Generation(config, metric, seeds, held_out, on_status)
    try:
        for rnd in range(1, config.generate.max_rounds + 1):
            if not run.run_round(rnd):
                break
    except ProviderError as exc:  # fatal: a bad key or unknown model fails every request
        raise AssayError(exc.expected, exc.found, f"{exc.fix} (generate.model / judge.model in the config)",
                         code="provider_error") from None
    return run.finish()


class _Generation:
    """One generation run: its settings, providers and filters, and what the rounds kept and dropped."""

    def __init__(self, config: Any, metric: Any, seeds: list[dict[str, Any]], held_out: list[dict[str, Any]],
                 on_status: Status | None):
        self.config, self.metric, self.seeds, self.held_out, self.on_status = config, metric, seeds, held_out, on_status
        self.t0 = time.monotonic()
        self.gen = gen = config.generate
        self.generator = provider_from_config(gen, config.base_dir)
        self.judge = provider_from_config(config.judge, config.base_dir) if config.judge else self.generator
        self.providers = [self.generator] if self.judge is self.generator else [self.generator, self.judge]
        self.data_dir = config.data_dir()
        self.review = ReviewLog(self.data_dir)
        self.feedback = [f for f in gen.feedback if f.strip()] + self.review.feedback()
        self.targets = label_targets(gen.target_size, metric.labels, gen.label_distribution, seeds)
        self.filt = RowFilter(metric, seeds, held_out, near_threshold=gen.near_duplicate_threshold,
                              leakage_threshold=gen.leakage_threshold, excluded_hashes=self.review.excluded_hashes(),
                              excluded_rows=self.review.excluded_rows())
        self.picker = SeedPicker(seeds, gen.seed)
        self.progress = _Progress(on_status, gen.target_size, lambda: sum(p.stats.cost_usd for p in self.providers))
        self.fp = fingerprint(config, metric, seeds)
        # the last set, rejected rows out
        self.previous = previous_rows(self.data_dir, self.fp, self.review, TRAIN_FILE, REPORT_FILE)
        for row in self.previous.rows:
            self.filt.keep(row)  # new rows must not repeat the ones kept
        self.kept: list[dict[str, Any]] = list(self.previous.rows)
        self.dropped_rows: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.agreement: Counter[tuple[str, str | None]] = Counter()
        self.relabelled = 0
        self.rounds: list[dict[str, Any]] = []
        self.yields: dict[str, tuple[int, int]] = {}  # label -> (rows asked, rows kept) in its latest round
        self.request = 0

    def run_round(self, rnd: int) -> bool:
        """One round: plan calls for the missing rows, generate, filter, judge, keep. False: nothing was missing."""
        have = Counter(r["label"] for r in self.kept)
        missing = {lab: self.targets[lab] - have[lab] for lab in self.metric.labels if self.targets[lab] > have[lab]}
        if not missing:
            return False
        # top-up rounds ask for more when the filters and the judge kept few of the rows asked for
        factor = {lab: _factor(self.gen.overgenerate, *self.yields.get(lab, (0, 0))) for lab in missing}
        calls = self.plan(rnd, missing, factor)
        candidates, parsed = self.generate(rnd, calls, missing)
        n_kept = self.judge_and_keep(rnd, candidates, missing)
        kept_now = Counter(r["meta"]["lineage"]["intended_label"] for r in self.kept[len(self.kept) - n_kept:])
        for lab in missing:
            self.yields[lab] = (sum(c.n for c in calls if c.label == lab), kept_now[lab])
        self.rounds.append({"round": rnd, "calls": len(calls), "rows_requested": sum(c.n for c in calls),
                            "rows_parsed": parsed, "candidates": len(candidates), "kept": n_kept,
                            "missing_before": missing, "overgenerate": {k: round(v, 3) for k, v in factor.items()}})
        return True

    def plan(self, rnd: int, missing: dict[str, int], factor: dict[str, float]) -> list[Call]:
        """The round's generator calls, their prompts written."""
        gen = self.gen
        calls = plan_calls(missing, strategies=gen.strategies, picker=self.picker, rows_per_call=gen.rows_per_call,
                           seeds_per_call=gen.seeds_per_call, overgenerate=factor, round_=rnd,
                           first_request=self.request)
        self.request += len(calls)
        for c in calls:
            c.prompt = build_prompt(self.metric, c.strategy, c.label, c.seeds, c.n, self.feedback, c.request)
        return calls

    def generate(self, rnd: int, calls: list[Call], missing: dict[str, int]) -> tuple[list[dict[str, Any]], int]:
        """(the rows the generator wrote that pass the filters, how many rows it wrote)."""
        self.progress.plan(len(calls), f"round {rnd}: generator calls", sum(missing.values()), 0)
        answers = self.generator.map(lambda c: _ask(self.generator, c, self.gen), calls,
                                     lambda i, r: self.progress.tick())
        self.filt.start_round()
        candidates: list[dict[str, Any]] = []
        parsed = 0
        for c, ans in zip(calls, answers):
            items = self.read_answer(c, ans)
            for item in items:
                parsed += 1
                row, why = to_row(item, c, self.metric, self.generator.id)
                if row is None:
                    self.dropped_rows.append(self.filt.drop("invalid_row", None, f"{why}: {str(item)[:200]}"))
                    continue
                reason = self.filt.check(row)
                if reason:
                    self.dropped_rows.append(self.filt.drop(reason, row))
                else:
                    candidates.append(row)
        self.calls["rows_parsed"] += parsed
        return candidates, parsed

    def read_answer(self, call: Call, ans: Completion | Exception) -> list[Any]:
        """The rows in one generator answer ([] for a failed or unparseable one, counted and dropped)."""
        self.calls["planned"] += 1
        self.calls["rows_requested"] += call.n
        if isinstance(ans, Exception):
            self.calls["failed"] += 1
            self.dropped_rows.append({"reason": "generator_failed", "detail": str(ans)[:300], "row": None})
            return []
        self.calls["cached"] += int(ans.cached)
        items = parse_rows(ans.text)
        if items is None:
            self.calls["unparseable"] += 1
            self.dropped_rows.append({"reason": "generator_unparseable", "detail": ans.text[:300], "row": None})
            return []
        self.calls["answered"] += 1
        return items

    def judge_and_keep(self, rnd: int, candidates: list[dict[str, Any]], missing: dict[str, int]) -> int:
        """Judge the candidates (``generate.supervise``) and keep those the judge agrees with (or relabel them,
        ``on_disagreement: relabel``); returns how many were kept."""
        gen, judge = self.gen, self.judge
        self.progress.plan(len(candidates), f"round {rnd}: judging", sum(missing.values()), 1)
        if gen.supervise and candidates:
            judgments = judge.judge_many(self.metric, candidates, lambda i, j: self.progress.tick())
        else:
            judgments = [None] * len(candidates)
        n_kept = 0
        for row, j in zip(candidates, judgments):
            intended = row["label"]
            if j is not None:
                row["meta"]["judge"] = {"model": judge.id, "label": j.label, "probabilities": j.probabilities,
                                        "error": j.error}
                if not j.ok:
                    reason = "judge_unparseable" if (j.error or "").startswith("unparseable") else "judge_failed"
                    self.dropped_rows.append(self.filt.drop(reason, row, j.text[:200] or j.error))
                    continue
                self.agreement[(intended, j.label)] += 1
                if j.label != intended:
                    if gen.on_disagreement == "drop":
                        self.dropped_rows.append(self.filt.drop("judge_disagreed", row, j.label))
                        continue
                    row["label"] = j.label
                    self.relabelled += 1
            self.filt.keep(row)
            self.kept.append(row)
            n_kept += 1
            self.progress.rows = len(self.kept)
        return n_kept

    def finish(self) -> GenerationResult:
        """Trim to the targets, write the rows, the review sample and the data report; an error for no rows."""
        gen, filt, calls = self.gen, self.filt, self.calls
        kept, surplus = _trim(self.kept, self.targets, gen.seed, keep_first=len(self.previous.rows))
        self.dropped_rows += [filt.drop("surplus", row) for row in surplus]
        review_rows, files = write_outputs(self.data_dir, kept, self.review, gen.review_size, gen.seed,
                                           self.dropped_rows, reviewed=self.review.decided_hashes())
        report = build_report(
            config=self.config, metric=self.metric, seeds=self.seeds, held_out=self.held_out, rows=kept,
            targets=self.targets, generator=self.generator, judge=self.judge, providers=self.providers, calls=calls,
            dropped=filt.dropped, examples=filt.examples, relabelled=self.relabelled, agreement=self.agreement,
            rounds=self.rounds, feedback=self.feedback, review_rows=len(review_rows),
            seconds=time.monotonic() - self.t0, files=files,
        )
        report["fingerprint"] = self.fp
        report["reused"] = self.previous.summary()
        write_report(report, self.data_dir)
        if not kept:  # never train on the seeds alone as if generation had worked
            cost = report["cost"]
            raise AssayError(
                "generated training rows that pass the filters and the judge",
                f"0 usable rows of {calls['rows_requested']} requested ({calls['planned']} generator calls: "
                f"{calls['answered']} answered, {calls['failed']} failed, {calls['unparseable']} "
                f"unparseable; {calls['rows_parsed']} rows parsed; dropped {dict(filt.dropped) or 'none'}; "
                f"{cost['requests']} HTTP requests incl. {cost['retries']} retries, {cost['failures']} failures)",
                f"check generate.model and its endpoint, see {self.data_dir / 'data_report.md'} and dropped.jsonl",
                code="generation_failed")
        if self.on_status is not None:
            self.on_status("generating", 1.0, f"{len(kept)}/{gen.target_size} rows, "
                           f"{sum(filt.dropped.values())} dropped, ${report['cost']['total_usd']:.4f}, "
                           f"written to {self.data_dir}")
        return GenerationResult(rows=kept, report=report, data_dir=self.data_dir, files=report["files"])


def _factor(base: float, asked: int, kept: int) -> float:
    """Rows to ask per missing row: ``overgenerate`` in the first round, then ``overgenerate`` / the
    share of asked rows the last round kept (capped at MAX_TOP_UP)."""
    if not asked:
        return base
    return max(base, min(MAX_TOP_UP, base * asked / kept) if kept else MAX_TOP_UP)


def _ask(provider: Any, call: Call, gen: Any) -> Completion:
    max_tokens = gen.max_tokens or min(8192, 200 + 400 * call.n)
    return provider.generate(call.prompt, max_tokens=max_tokens, seed=gen.seed)


def _trim(rows: list[dict[str, Any]], targets: Mapping[str, int], seed: int, keep_first: int = 0
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Keep at most ``targets[label]`` rows per label (a seeded random choice, order kept); the first
    ``keep_first`` rows (the last set's, kept through review) are never trimmed."""
    keep_idx: set[int] = set(range(keep_first))
    for label, n in targets.items():
        held = sum(1 for r in rows[:keep_first] if r["label"] == label)
        idx = [i for i, r in enumerate(rows) if r["label"] == label and i >= keep_first]
        if held + len(idx) > n:
            _rng(seed, "trim", label).shuffle(idx)
            idx = idx[:max(0, n - held)]
        keep_idx.update(idx)
    keep_idx.update(i for i, r in enumerate(rows) if r["label"] not in targets)
    return ([r for i, r in enumerate(rows) if i in keep_idx], [r for i, r in enumerate(rows) if i not in keep_idx])
