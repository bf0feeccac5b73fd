"""Writing a Discovery: ``discovery.json``, ``discovery.md`` and one folder per kept check.

    OUT/discovery.json, OUT/discovery.md
    OUT/checks/<name>/metric.yaml     the check as a MetricSpec (``assay train`` reads it)
    OUT/checks/<name>/labeled.jsonl   reviewed rows labeled for the check: its cluster true, passing rows false
    OUT/checks/<name>/config.yaml     metric.yaml + labeled.jsonl as the test set: ``assay train config.yaml``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import AssayError

if TYPE_CHECKING:  # pragma: no cover
    from ._discover import Discovery, FoundCheck


def _labeled(d: "Discovery", c: "FoundCheck") -> list[dict[str, Any]]:
    rev = d.reviewed
    if rev is None:
        return []
    members, passing = set(c.members), set(rev.passing)
    out = []
    for i, row in enumerate(rev.rows):
        rid = str(row["id"])
        if rid in members and i in rev.notes:
            out.append({**{k: v for k, v in row.items() if k != "label"}, "label": "true"})
        elif i in passing:
            out.append({**{k: v for k, v in row.items() if k != "label"}, "label": "false"})
    return out


def write_check(d: "Discovery", c: "FoundCheck", folder: Path) -> dict[str, str]:
    """The kept check's metric.yaml, labeled.jsonl and config.yaml; returns their paths."""
    assert c.spec is not None
    folder.mkdir(parents=True, exist_ok=True)
    metric = folder / "metric.yaml"
    metric.write_text(c.spec.to_yaml())
    files = {"metric": str(metric)}
    rows = _labeled(d, c)
    if rows:
        labeled = folder / "labeled.jsonl"
        labeled.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))
        config = folder / "config.yaml"
        config.write_text(yaml.safe_dump({"metric": "metric.yaml", "data": {"test_set": "labeled.jsonl"},
                                          "output": "artifact"}, sort_keys=False))
        files.update(labeled=str(labeled), config=str(config))
    return files


def write(d: "Discovery", out: Path, overwrite: bool = False) -> Path:
    """The report and the kept checks under ``out``; an earlier discovery there is replaced only with
    ``overwrite`` (its ``checks/`` folder is removed first, so no stale check stays behind)."""
    import shutil


    if (out / "discovery.json").exists():
        if not overwrite:
            raise AssayError("an output folder without an earlier discovery", f"{out / 'discovery.json'}",
                             "pass another --output, or --overwrite to replace it", code="output_exists")
        if (out / "checks").is_dir():
            shutil.rmtree(out / "checks")
    out.mkdir(parents=True, exist_ok=True)
    for c in d.kept:
        c.files = write_check(d, c, out / "checks" / c.name)
    d.out_dir = str(out)
    (out / "discovery.json").write_text(json.dumps(d.to_dict(), indent=2, ensure_ascii=False, default=str))
    (out / "discovery.md").write_text(markdown(d))
    return out


def _fmt(v: Any) -> str:
    return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def markdown(d: "Discovery") -> str:
    n = d.counts
    lines = [f"# Failure modes discovered in {d.source}", "",
             f"{n.get('rows', 0)} reviewed rows: {n.get('failing', 0)} failing (label `{d.fail_label}`), "
             f"{n.get('failing_with_note', 0)} of them described; {n.get('passing', 0)} passing. "
             f"Shape `{d.shape}`. {d.k} clusters (k by cosine silhouette: "
             + (", ".join(f"k={k}: {_fmt(s)}" for k, s in d.silhouettes.items()) or "fixed") + ").", "",
             f"A check is kept when its kappa with the reviewed labels (its cluster's rows = failure present, "
             f"passing rows = absent) is at least {d.settings.get('min_kappa')}.", "",
             "| cluster | size | check | kappa (95% interval) | precision | recall | fires on other failures | kept |",
             "|---|---|---|---|---|---|---|---|"]
    for c in d.checks:
        a = c.agreement
        ci = a.get("kappa_interval")
        kappa = _fmt(a.get("kappa")) + (f" ({_fmt(ci[0])}, {_fmt(ci[1])})" if ci else "")
        lines.append(f"| {c.cluster} | {c.size} | `{c.name}` | {kappa if a else 'not judged'} | "
                     f"{_fmt(a.get('precision'))} | {_fmt(a.get('recall'))} | {_fmt(a.get('other_fire_rate'))} | "
                     f"{'yes' if c.kept else 'no'} |")
    for c in d.checks:
        merged = f", with clusters {', '.join(map(str, c.merged))}" if c.merged else ""
        lines += ["", f"## Cluster {c.cluster}{merged}: `{c.name}` ({c.size} rows, {'kept' if c.kept else 'not kept'})",
                  "",
                  c.description or "(not proposed)", "", f"Why: {c.reason}."]
        if c.named_by:
            lines += ["", f"Named by: {c.named_by}."]
        lines += ["", "Examples:", ""]
        for e in c.examples:
            row = e.get("row") or {}
            what = "; ".join(f"{k}: {str(v)[:160]}" for k, v in row.items() if k != "id")
            lines.append(f"- `{e['id']}`: {e['note']}" + (f"  \n  {what}" if what else ""))
        if c.prompt:
            lines += ["", "Check prompt:", "", "```", c.prompt.rstrip(), "```"]
        if c.files:
            lines += ["", "Files: " + ", ".join(f"`{Path(p).name}`" for p in c.files.values())]
    prov = d.provider
    if prov:
        lines += ["", f"Provider `{prov.get('id')}`: {prov.get('requests', 0)} requests, "
                      f"{prov.get('cache_hits', 0)} from the cache, ${prov.get('cost_usd', 0.0)}."]
    return "\n".join(lines) + "\n"
