"""``discover``: reviewed rows with notes -> failure-mode clusters -> binary checks measured against people.

    d = discover("reviewed.jsonl", "openai/gpt-4o-mini", fail_label="false", out="discovered")
    [c.name for c in d.kept]            # checks whose kappa with the reviewed labels cleared the bar

1. The failing rows' descriptions (reviewer notes, judge rationales) are embedded with the default
   encoder and clustered (k by silhouette, fixed seed): ``_cluster``.
2. The provider names each cluster and writes a binary judge prompt for it: ``_propose``.
3. Each check is measured: the provider judges, with that prompt, the rows of the check's own cluster
   (the reviewed positives: the failure is present) and passing rows (negatives). Failing rows of the
   other clusters are neither: a row may show several failures, and reviewers described only one,
   so they stay out of the kappa; a sample of them is judged to report how often the check fires
   there (``other_fire_rate``: overlap between checks, not an error).
4. Checks whose kappa reaches ``min_kappa`` are kept and written as ``checks/<name>/metric.yaml``
   (a valid MetricSpec), with ``labeled.jsonl`` (the reviewed rows labeled for this check) and a
   ``config.yaml`` that ``assay train`` takes as it is. ``discovery.json`` / ``discovery.md`` report
   every cluster, kept or not.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import AssayError
from ..metrics import InputShape, MetricSpec
from ..providers import get_provider
from ..stats import judge_agreement
from ._cluster import Encoder, central, cluster_embeddings, embed_texts, top_terms
from ._discover_report import markdown, write
from ._normalize import categorize, mask_entities
from ._propose import check_spec, propose
from ._reviewed import Reviewed, read_reviewed

LABELS = ("true", "false")  # a check's labels: true = the failure is present


@dataclass
class FoundCheck:
    """One cluster of failure descriptions and the check proposed for it."""

    cluster: int
    size: int
    name: str
    description: str
    prompt: str
    named_by: str  # provider, provider+template, fallback
    examples: list[dict[str, Any]] = field(default_factory=list)  # {"id", "note", "row"}
    agreement: dict[str, Any] = field(default_factory=dict)
    kept: bool = False
    reason: str = ""
    spec: MetricSpec | None = None
    files: dict[str, str] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)  # row ids of the cluster
    merged: list[int] = field(default_factory=list)  # other clusters the provider gave the same name

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "size": self.size, "name": self.name, "description": self.description,
                "prompt": self.prompt, "named_by": self.named_by, "examples": self.examples,
                "agreement": self.agreement, "kept": self.kept, "reason": self.reason, "files": self.files,
                "merged": self.merged, "members": self.members}


@dataclass
class Discovery:
    """What ``discover`` found: the clusters, each one's check and agreement, and the settings."""

    source: str
    shape: str
    fail_label: str
    counts: dict[str, int]
    k: int
    silhouettes: dict[int, float | None]
    checks: list[FoundCheck]
    settings: dict[str, Any]
    provider: dict[str, Any] = field(default_factory=dict)
    out_dir: str | None = None
    reviewed: Reviewed | None = field(default=None, repr=False)  # the rows the labeled files are written from

    @property
    def kept(self) -> list[FoundCheck]:
        return [c for c in self.checks if c.kept]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "shape": self.shape, "fail_label": self.fail_label, "counts": self.counts,
                "k": self.k, "silhouettes": {str(k): v for k, v in self.silhouettes.items()},
                "kept": [c.name for c in self.kept], "checks": [c.to_dict() for c in self.checks],
                "settings": self.settings, "provider": self.provider, "out_dir": self.out_dir}

    def to_markdown(self) -> str:

        return markdown(self)

    def write(self, out: str | Path, overwrite: bool = False) -> Path:

        return write(self, Path(out), overwrite)


def _provider(provider: Any) -> Any:
    if isinstance(provider, str):

        return get_provider(provider)
    if provider is None or not hasattr(provider, "judge") or not hasattr(provider, "generate"):
        raise AssayError("a provider: 'name/model' or an assay.providers.Provider", f"{type(provider).__name__}",
                         "pass e.g. --provider openai/gpt-4o-mini (mock/... in tests)", code="invalid_input")
    return provider


def _sample(items: Sequence[int], n: int | None, seed: int, salt: str) -> list[int]:
    items = list(items)
    if n is None or len(items) <= n:
        return items
    return sorted(random.Random(f"{seed}:{salt}").sample(items, n))


def _brief(row: Mapping[str, Any], limit: int = 400) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k == "label":
            continue
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
        out[k] = text if len(text) <= limit else text[:limit] + " [...]"
    return out


def measure(provider: Any, spec: MetricSpec, positives: Sequence[Mapping[str, Any]],
            negatives: Sequence[Mapping[str, Any]], others: Sequence[Mapping[str, Any]] = (), *,
            n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The check's agreement with the reviewed labels: positives (its cluster) say true, negatives
    (passing rows) false; kappa with a bootstrap interval and accuracy (a row the judge did not answer is a
    disagreement: :func:`assay.stats.judge_agreement`, counted in ``unjudged``), precision and recall of the
    judged rows, and how often it fires on failing rows of other clusters."""
    rows = list(positives) + list(negatives) + list(others)
    judged = provider.judge_many(spec, [{k: v for k, v in r.items() if k != "label"} for r in rows])
    labels = [getattr(j, "label", None) for j in judged]  # a ProviderError in place of a Judgment: unjudged
    n_pos, n_neg = len(positives), len(negatives)
    truth = ["true"] * n_pos + ["false"] * n_neg
    agreement = judge_agreement(truth, labels[:n_pos + n_neg], LABELS, bootstrap=n_boot, seed=seed)
    kappa, ci = agreement["kappa"], agreement["interval"]
    pairs = [(t, p) for t, p in zip(truth, labels[:n_pos + n_neg]) if p in LABELS]
    tp = sum(1 for t, p in pairs if t == "true" and p == "true")
    fp = sum(1 for t, p in pairs if t == "false" and p == "true")
    fn = sum(1 for t, p in pairs if t == "true" and p == "false")
    tn = len(pairs) - tp - fp - fn
    other = [p for p in labels[n_pos + n_neg:] if p in LABELS]
    r4 = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
    return {"kappa": r4(kappa), "kappa_interval": [r4(x) for x in ci] if ci else None, "n": len(pairs),
            "positives": n_pos, "negatives": n_neg, "unjudged": n_pos + n_neg - len(pairs),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": r4(tp / (tp + fp)) if tp + fp else None, "recall": r4(tp / (tp + fn)) if tp + fn else None,
            "accuracy": r4(agreement["accuracy"]),
            "other_failures": len(others), "other_fire_rate": r4(other.count("true") / len(other)) if other else None}


def _sample_ids(ids: Sequence[str], n: int | None, seed: int, salt: str) -> list[str]:
    return [ids[i] for i in _sample(range(len(ids)), n, seed, salt)]


def _propose_all(prov: Any, rev: Reviewed, described: list[int], notes: list[str], texts: list[str], x: np.ndarray,
                 clustering: Any, shape: InputShape, min_size: int, n_examples: int, say: Callable[[str], None],
                 ) -> list[FoundCheck]:
    """A check per cluster (clusters given the same name merged into the first), small clusters reported."""
    by_name: dict[str, FoundCheck] = {}
    out: list[FoundCheck] = []
    for c in range(clustering.k):
        local = clustering.members(c)
        typical = central(x, local, n_examples)
        examples = [{"id": str(rev.rows[described[i]]["id"]), "note": notes[i], "category": texts[i],
                     "row": _brief(rev.rows[described[i]])} for i in typical]
        found = FoundCheck(c, len(local), f"cluster_{c}", "", "", "", examples,
                           members=[str(rev.rows[described[i]]["id"]) for i in local])
        if len(local) < min_size:
            found.reason = f"too small: {len(local)} rows < min_size {min_size}"
            out.append(found)
            continue
        prop = propose(prov, [notes[i] for i in typical], [rev.rows[described[i]] for i in typical[:3]], shape,
                       top_terms(texts, clustering.labels, c))
        if prop.name in by_name:  # the same failure mode, split by the encoder: one check
            first = by_name[prop.name]
            first.size += len(local)
            first.members += found.members
            first.merged.append(c)
            say(f"[discover] cluster {c} ({len(local)} rows) is {prop.name} too: merged into cluster {first.cluster}")
            continue
        found.name, found.description, found.prompt, found.named_by = (prop.name, prop.description, prop.prompt,
                                                                       prop.named_by)
        found.spec = check_spec(prop.name, prop.description, prop.prompt, shape)
        say(f"[discover] cluster {c} ({len(local)} rows): {prop.name} ({prop.named_by})")
        by_name[prop.name] = found
        out.append(found)
    return out


def discover(rows: Any, provider: Any, *, encoder: str | Encoder = "minilm", metric: Any = None,
             fail_label: str | None = None, note_field: str | None = None, k: int | None = None, k_max: int = 8,
             min_size: int = 3,
             min_kappa: float = 0.6, categorize_notes: bool = True, max_positives: int | None = 100,
             max_negatives: int | None = 100, other_sample: int = 20, n_examples: int = 5, n_boot: int = 1000,
             seed: int = 0, out: str | Path | None = None, overwrite: bool = False,
             progress: Callable[[str], None] | None = None) -> Discovery:
    """Failure modes from reviewed rows: cluster the failing rows' descriptions, propose one binary
    check per cluster through ``provider``, measure each against the reviewed labels, keep those with
    kappa >= ``min_kappa`` and (with ``out``) write them as metric specs ready for ``assay train``.

    ``rows``: a file (JSONL/CSV/... with ``label`` and ``note``/``rationale``), a monitor database, a
    list of dicts or a :class:`Reviewed`. ``fail_label`` / ``metric`` say which label fails, ``note_field``
    where the descriptions are when not in the usual columns (e.g. ``meta.error``; see
    :func:`read_reviewed`). The notes are stripped of the rows' own names and values and (with
    ``categorize_notes``) rewritten by the provider as generic failure categories (``_normalize``)
    before ``encoder`` (a base model, ``minilm`` by default, or a callable texts -> vectors) embeds
    them. Clusters smaller than ``min_size`` are reported, not proposed; clusters the provider gives
    the same name are one failure mode (merged)."""
    say = progress or (lambda _m: None)
    if out is not None and (Path(out) / "discovery.json").exists() and not overwrite:  # before anything is spent
        raise AssayError("an output folder without an earlier discovery", f"{Path(out) / 'discovery.json'}",
                         "pass another --output, or --overwrite to replace it", code="output_exists")
    rev: Reviewed = read_reviewed(rows, fail_label=fail_label, metric=metric, note_field=note_field)
    shape = InputShape.trace if rev.shape == InputShape.session else rev.shape  # a check reads one row
    described = rev.described
    if len(described) < max(2, min_size):
        raise AssayError(f"at least {max(2, min_size)} failing rows with a note or rationale",
                         f"{len(described)} (of {len(rev.failing)} failing rows, {rev.counts['rows']} rows)",
                         "add reviewer notes ('note' column) to the failing rows, or lower --min-size",
                         code="invalid_input")
    prov = _provider(provider)
    notes = [rev.notes[i] for i in described]
    texts = [mask_entities(n, rev.rows[i]) for n, i in zip(notes, described)]
    uncategorized = len(texts)
    if categorize_notes:
        say(f"[discover] categorizing {len(texts)} failure descriptions with {getattr(prov, 'id', 'the provider')}")
        texts, uncategorized = categorize(prov, texts)
        if uncategorized:
            say(f"[discover] {uncategorized} descriptions got no usable category from the provider: "
                "they are clustered as written (names and values masked)")
    say(f"[discover] embedding {len(texts)} descriptions ({encoder if isinstance(encoder, str) else 'custom'})")
    x = embed_texts(texts, encoder)
    clustering = cluster_embeddings(x, k=k, k_max=k_max, seed=seed)
    say(f"[discover] {clustering.k} clusters")
    checks = _propose_all(prov, rev, described, notes, texts, x, clustering, shape, min_size, n_examples, say)
    negatives = [rev.rows[i] for i in _sample(rev.passing, max_negatives, seed, "negatives")]
    index = {str(rev.rows[i]["id"]): i for i in described}
    for c in checks:
        if c.spec is None:
            continue
        say(f"[discover] judging rows with {c.name} ({c.size} rows)")
        mine = set(c.members)
        pos = [rev.rows[index[m]] for m in _sample_ids(c.members, max_positives, seed, c.name)]
        pool = [m for m in index if m not in mine]
        others = [rev.rows[index[m]] for m in _sample_ids(pool, other_sample, seed, "o" + c.name)]
        c.agreement = measure(prov, c.spec, pos, negatives, others, n_boot=n_boot, seed=seed)
        kappa = c.agreement["kappa"]
        c.kept = kappa is not None and kappa >= min_kappa
        c.reason = (f"kappa {kappa} >= {min_kappa}" if c.kept else
                    "kappa undefined (no passing rows, or the judge answered one label only)" if kappa is None
                    else f"kappa {kappa} < {min_kappa}")
    settings = {"encoder": encoder if isinstance(encoder, str) else "custom", "k": k, "k_max": k_max,
                "categorize_notes": categorize_notes, "uncategorized_notes": uncategorized,
                "min_size": min_size, "min_kappa": min_kappa, "max_positives": max_positives,
                "max_negatives": max_negatives, "other_sample": other_sample, "n_boot": n_boot, "seed": seed}
    d = Discovery(rev.source, shape.value, rev.fail_label, dict(rev.counts), clustering.k, clustering.silhouettes,
                  checks, settings, {"id": getattr(prov, "id", str(prov)), **(prov.stats.to_dict()
                                                                               if hasattr(prov, "stats") else {})},
                  reviewed=rev)
    if out is not None:
        d.write(out, overwrite)
    return d
