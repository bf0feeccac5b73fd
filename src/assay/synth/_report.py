"""The data report of a generation run (JSON + a short Markdown page) and the files it writes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..data import row_hash, write_rows
from ..metrics import MetricSpec
from ..review import ReviewLog, sample_for_review
from ._dedupe import key_text
from ._stats import distribution_check, diversity_stats, length_stats

TRAIN_FILE = "train.jsonl"
REPORT_FILE = "data_report.json"
REPORT_MD = "data_report.md"
DROPPED_FILE = "dropped.jsonl"


def write_outputs(data_dir: Path, rows: Sequence[Mapping[str, Any]], review: ReviewLog, review_size: int,
                  seed: int, dropped: Sequence[Mapping[str, Any]], reviewed: set[str] | None = None
                  ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """train.jsonl, dropped.jsonl (every dropped row with its reason) and the review sample, drawn
    from the rows no reviewer has decided on yet (all rows when every one has been)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    files = {"train": str(write_rows(rows, data_dir / TRAIN_FILE)),
             "dropped": str(write_rows(dropped, data_dir / DROPPED_FILE))}
    fresh = [r for r in rows if row_hash(r) not in reviewed] if reviewed else list(rows)
    sample = sample_for_review(fresh or rows, review_size, seed)
    files["review_sample"] = str(review.write_sample(sample))
    files["review_log"] = str(review.log_path)
    files["report"] = str(data_dir / REPORT_FILE)
    files["report_md"] = str(data_dir / REPORT_MD)
    return sample, files


def _cost(providers: Sequence[Any], generator: Any, judge: Any) -> dict[str, Any]:
    stats = {"generator": generator.stats.to_dict()}
    if judge is not generator:
        stats["judge"] = judge.stats.to_dict()
    out: dict[str, Any] = {"total_usd": round(sum(p.stats.cost_usd for p in providers), 6)}
    for k in ("input_tokens", "output_tokens", "requests", "cache_hits", "retries", "failures"):
        out[k] = sum(getattr(p.stats, k) for p in providers)
    out["saved_by_cache_usd"] = round(sum(p.stats.saved_usd for p in providers), 6)
    out["priced"] = all(p.stats.priced for p in providers)
    out["providers"] = stats
    return out


def build_report(*, config: Any, metric: MetricSpec, seeds: Sequence[Mapping[str, Any]],
                 held_out: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]], targets: Mapping[str, int],
                 generator: Any, judge: Any, providers: Sequence[Any], calls: Mapping[str, int],
                 dropped: Mapping[str, int], examples: Mapping[str, Any], relabelled: int,
                 agreement: Mapping[tuple[str, str | None], int], rounds: list[dict[str, Any]],
                 feedback: Sequence[str], review_rows: int, seconds: float, files: Mapping[str, str]) -> dict[str, Any]:
    gen = config.generate
    labels = list(metric.labels)
    counts = Counter(r["label"] for r in rows)
    syn_texts = [key_text(r, metric) for r in rows]
    seed_texts = [key_text(r, metric) for r in seeds]
    judged = sum(agreement.values())
    agreed = sum(n for (a, b), n in agreement.items() if a == b)
    dist = distribution_check(seed_texts, syn_texts, warn_below=gen.distribution_warning)
    short = {lab: targets[lab] - counts.get(lab, 0) for lab in labels if counts.get(lab, 0) < targets[lab]}
    warnings = []
    if short:
        warnings.append(f"short of the target after {len(rounds)} round(s): "
                        + ", ".join(f"{lab} {n}" for lab, n in short.items()) + " (raise max_rounds or overgenerate)")
    if dist.get("warning"):
        warnings.append(f"synthetic rows drift from the seeds: kNN similarity ratio {dist['ratio']} "
                        f"< {gen.distribution_warning}")
    if dist.get("too_close"):
        warnings.append(f"synthetic rows hug the seeds (ratio {dist['ratio']}): little new material")
    if calls.get("unparseable") or calls.get("failed"):
        warnings.append(f"{calls.get('unparseable', 0)} generator answers unparseable, "
                        f"{calls.get('failed', 0)} calls failed (see {DROPPED_FILE})")
    parsed = calls.get("rows_parsed", 0)
    return {
        "metric": metric.name,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "generator": generator.id,
        "judge": judge.id if gen.supervise else None,
        "supervised": gen.supervise,
        "on_disagreement": gen.on_disagreement,
        "seeds": len(seeds),
        "held_out": len(held_out),
        "target_size": gen.target_size,
        "targets": dict(targets),
        "rows": len(rows),
        "label_counts": {lab: counts.get(lab, 0) for lab in labels},
        "seed_label_counts": {lab: sum(1 for s in seeds if s.get("label") == lab) for lab in labels},
        "strategy_counts": dict(Counter(r["meta"]["lineage"]["strategy"] for r in rows)),
        "short_by": short,
        "rounds": rounds,
        "calls": {k: calls.get(k, 0) for k in ("planned", "answered", "unparseable", "failed", "cached",
                                               "rows_requested", "rows_parsed")},
        "dropped": {k: int(v) for k, v in sorted(dropped.items())},
        "relabelled": relabelled,
        # every parsed row is kept or dropped with a reason
        "accounted": parsed == len(rows) + sum(dropped.values()),
        "judge_agreement": {
            "judged": judged, "agreed": agreed, "rate": round(agreed / judged, 4) if judged else None,
            "unparseable": int(dropped.get("judge_unparseable", 0)), "failed": int(dropped.get("judge_failed", 0)),
            "confusion": {a: {b: agreement.get((a, b), 0) for b in labels} for a in labels},
        },
        "lengths": {"synthetic": length_stats(syn_texts), "seeds": length_stats(seed_texts)},
        "diversity": {"synthetic": diversity_stats(syn_texts, sample=len(seed_texts), seed=gen.seed),
                      "seeds": diversity_stats(seed_texts)},
        "distribution": dist,
        "cost": _cost(providers, generator, judge),
        "feedback": list(feedback),
        "review_sample": review_rows,
        "drop_examples": {k: v[:2] for k, v in examples.items()},
        "warnings": warnings,
        "seconds": round(seconds, 2),
        "files": dict(files),
    }


def write_report(report: Mapping[str, Any], data_dir: Path) -> None:
    (data_dir / REPORT_FILE).write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str))
    (data_dir / REPORT_MD).write_text(report_markdown(report))


def report_markdown(r: Mapping[str, Any]) -> str:
    ja, cost, dist = r["judge_agreement"], r["cost"], r["distribution"]
    lines = [
        f"# Generated training data: {r['metric']}",
        "",
        f"{r['rows']} rows (target {r['target_size']}) from {r['seeds']} seed rows; generator `{r['generator']}`"
        + (f", judge `{r['judge']}` ({r['on_disagreement']} on disagreement)." if r["supervised"] else
           ", no judge supervision."),
        "",
        "| label | rows | target | seeds |",
        "|---|---|---|---|",
        *[f"| {lab} | {n} | {r['targets'].get(lab, 0)} | {r['seed_label_counts'].get(lab, 0)} |"
          for lab, n in r["label_counts"].items()],
        "",
        f"Calls: {r['calls']['planned']} ({r['calls']['unparseable']} unparseable, {r['calls']['failed']} failed, "
        f"{r['calls']['cached']} from cache); rows parsed {r['calls']['rows_parsed']}.",
        "",
        "Dropped: " + (", ".join(f"{k} {v}" for k, v in r["dropped"].items()) or "none")
        + f"; relabelled {r['relabelled']}.",
        "",
        f"Judge agreement with the intended label: {ja['rate']} on {ja['judged']} rows "
        f"({ja['unparseable']} unparseable, {ja['failed']} failed).",
        "",
        f"Distribution (synthetic->seed / seed->seed TF-IDF kNN similarity): {dist.get('ratio')}"
        + (" **WARNING**" if dist.get("warning") else ""),
        "",
        f"Cost: ${cost['total_usd']:.4f} ({cost['input_tokens']} input + {cost['output_tokens']} output tokens, "
        f"{cost['requests']} requests, {cost['cache_hits']} cache hits)" + ("" if cost["priced"] else ", unpriced"),
        "",
    ]
    if r["warnings"]:
        lines += ["## Warnings", "", *[f"- {w}" for w in r["warnings"]], ""]
    lines += [f"Review sample: {r['review_sample']} rows in `{Path(r['files']['review_sample']).name}`.", ""]
    return "\n".join(lines)
