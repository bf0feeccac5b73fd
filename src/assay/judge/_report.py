"""The result of a tuning run: the tuned metric, and a report that says what was tried and measured.

``report`` (JSON-serialisable) holds the kappa of the best prompt per round with intervals, every
candidate prompt (scored or rejected, and why), the cost, which rows were used for what (counts and
content hashes of each part, and of the rows shown to the provider), and the final figures of the
starting and the chosen prompt, measured once on the test part. ``write(folder)`` saves
``metric.yaml`` (the tuned spec, same name), ``tune_report.json`` and ``tune_report.md``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..metrics import MetricSpec

if TYPE_CHECKING:  # pragma: no cover
    from ..providers import Provider
    from ._measure import Agreement
    from ._split import TuneSplit
    from ._tune import Candidate

FORMAT_VERSION = 1
FILES = {"metric": "metric.yaml", "report": "tune_report.json", "markdown": "tune_report.md"}


def prompt_sha256(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()


@dataclass
class TuneResult:
    metric: MetricSpec  # the chosen prompt (the starting metric when nothing beat it)
    start: MetricSpec
    report: dict[str, Any]

    @property
    def improved(self) -> bool:
        return self.metric.prompt != self.start.prompt

    @classmethod
    def build(cls, *, start: MetricSpec, chosen: "Candidate", candidates: Sequence["Candidate"],
              history: list[dict[str, Any]], split: "TuneSplit", final: Mapping[str, "Agreement"],
              shown_hashes: set[str], stop: str, provider: "Provider", cost_usd: float,
              budget_usd: float | None, settings: dict[str, Any]) -> "TuneResult":
        metric = chosen.metric or start
        manifest = split.manifest()
        test = set(manifest["test"]["hashes"])
        warnings = []
        for part in ("train", "validation", "test"):
            missing = [lab for lab in start.labels if lab not in manifest[part]["labels"]]
            if missing:
                warnings.append(f"the {part} part has no row labeled {missing}: its kappa may be undefined")
        if not provider.stats.priced and budget_usd is not None:
            warnings.append(f"{provider.id} has no price: the budget could not be enforced")
        s, c = final["start"].kappa, final["chosen"].kappa
        if chosen.source != "start" and s is not None and c is not None and c <= s:
            warnings.append("the chosen prompt does not beat the starting prompt on the test part: the "
                            "validation gain did not carry over (more seed rows narrow the intervals)")
        report = {
            "format_version": FORMAT_VERSION,
            "metric": start.name,
            "judge": provider.id,
            "start_prompt_sha256": prompt_sha256(start.prompt),
            "chosen_prompt_sha256": prompt_sha256(metric.prompt),
            "improved": metric.prompt != start.prompt,
            "chosen_round": chosen.round,
            "chosen_source": chosen.source,
            "stopped": stop,
            "final_test": {"start": final["start"].to_dict(), "chosen": final["chosen"].to_dict(),
                           "note": "measured once, after the search, on rows the search never saw"},
            "rounds": history,
            "candidates": [cand.to_dict() for cand in candidates],
            "cost": {"usd": round(cost_usd, 6), "budget_usd": budget_usd, "priced": provider.stats.priced,
                     "provider": provider.stats.to_dict()},
            "rows": {**manifest,
                     "shown_to_provider": {"n": len(shown_hashes), "hashes": sorted(shown_hashes)},
                     "used_for_selection": {"part": "validation", "n": manifest["validation"]["n"]},
                     "test_rows_shown_or_selected_on": len(test & (shown_hashes | set(manifest["validation"]["hashes"])
                                                                   | set(manifest["train"]["hashes"])))},
            "settings": settings,
            "warnings": warnings,
        }
        return cls(metric=metric, start=start, report=report)

    # --- output -----------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        r = self.report
        return {"metric": r["metric"], "judge": r["judge"], "improved": r["improved"], "stopped": r["stopped"],
                "validation_kappa": [x["best_validation"]["kappa"] for x in r["rounds"]],
                "test_kappa_start": r["final_test"]["start"], "test_kappa_chosen": r["final_test"]["chosen"],
                "candidates": len(r["candidates"]), "rejected": sum(c["status"] == "rejected" for c in r["candidates"]),
                "cost_usd": r["cost"]["usd"], "warnings": r["warnings"]}

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric.to_dict(), "report": self.report}

    def metric_yaml(self) -> str:
        r = self.report
        head = (f"# {r['metric']}: judge prompt tuned by `assay tune-judge` against {r['judge']}\n"
                f"# start prompt sha256 {r['start_prompt_sha256'][:16]}, chosen {r['chosen_prompt_sha256'][:16]} "
                f"(round {r['chosen_round']}, {r['chosen_source']}); see tune_report.json\n")
        return head + self.metric.to_yaml()

    def markdown(self) -> str:
        r = self.report
        t = r["final_test"]
        lines = [f"# Judge tuning: {r['metric']} with {r['judge']}", "",
                 f"Stopped: {r['stopped']}. Cost: ${r['cost']['usd']:.4f}"
                 + (f" of a ${r['cost']['budget_usd']} budget" if r["cost"]["budget_usd"] is not None else "") + ".",
                 "", "## Final figures (test part, measured once)", "",
                 "| prompt | kappa | 95% interval | accuracy | answered |", "|---|---|---|---|---|"]
        for name in ("start", "chosen"):
            a = t[name]
            lines.append(f"| {name} | {_f(a['kappa'])} | {_iv(a['interval'])} | {_f(a['accuracy'])} | "
                         f"{a['answered']}/{a['n']} |")
        lines += ["", "## Rounds (best prompt so far)", "",
                  "| round | candidates | rejected | search-train kappa | validation kappa | validation interval | cost $ |",
                  "|---|---|---|---|---|---|---|"]
        for x in r["rounds"]:
            tr, va = x["best_train"] or {}, x["best_validation"] or {}
            lines.append(f"| {x['round']} | {x['candidates']} | {x['rejected']} | {_f(tr.get('kappa'))} | "
                         f"{_f(va.get('kappa'))} | {_iv(va.get('interval'))} | {x['cost_usd']:.4f} |")
        rows = r["rows"]
        lines += ["", "## Rows", "",
                  f"search-train {rows['train']['n']} {rows['train']['labels']}, validation {rows['validation']['n']} "
                  f"{rows['validation']['labels']}, test {rows['test']['n']} {rows['test']['labels']}; "
                  f"{rows['shown_to_provider']['n']} search-train rows shown to the provider; "
                  f"test rows shown or selected on: {rows['test_rows_shown_or_selected_on']}.", "",
                  "## Candidates", ""]
        for i, c in enumerate(r["candidates"]):
            what = (f"validation kappa {_f(c['validation']['kappa'])}" if c["status"] == "scored"
                    else f"rejected: {c['reason']}")
            lines.append(f"- #{i} round {c['round']} ({c['source']}){' **chosen**' if c['chosen'] else ''}: {what} "
                         f"(sha256 {c['prompt_sha256'][:12]})")
        if r["warnings"]:
            lines += ["", "## Warnings", ""] + [f"- {w}" for w in r["warnings"]]
        lines += ["", "## Chosen prompt", "", "```", self.metric.prompt.rstrip(), "```", ""]
        return "\n".join(lines)

    def write(self, folder: str | Path) -> dict[str, str]:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / FILES["metric"]).write_text(self.metric_yaml(), encoding="utf-8")
        (out / FILES["report"]).write_text(json.dumps(self.report, indent=2, ensure_ascii=False), encoding="utf-8")
        (out / FILES["markdown"]).write_text(self.markdown(), encoding="utf-8")
        return {k: str(out / v) for k, v in FILES.items()}


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _iv(iv: Sequence[float] | None) -> str:
    return "-" if not iv else f"[{iv[0]:.3f}, {iv[1]:.3f}]"
