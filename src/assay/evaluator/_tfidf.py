"""TF-IDF features of a row: the text of the fields the metric reads and the word + character analyzers.

One definition for the ``tfidf`` block of the linear and hybrid families (``_linear.TfidfFeatures``) and
the report's TF-IDF + logistic-regression baseline (``assay.report._baselines``), so the candidate and the
baseline it is compared with read the same text the same way.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import require
from ..metrics import MetricSpec, field_text

WORD_TFIDF = dict(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=200_000)
CHAR_TFIDF = dict(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, max_features=200_000)


def baseline_text(metric: MetricSpec, row: Mapping[str, Any]) -> str:
    """The fields the metric reads, each as 'name: text'."""
    return "\n".join(f"{f}: {field_text(row.get(f))}" for f in metric.fields)


def tfidf_vectorizers(word_settings: Mapping[str, Any] | None = None, char_settings: Mapping[str, Any] | None = None):
    """(word, char) TfidfVectorizers with the baseline's settings (shared by the ``tfidf`` candidate)."""
    require("sklearn", "TF-IDF features", "train", package="scikit-learn")
    from sklearn.feature_extraction.text import TfidfVectorizer

    return (TfidfVectorizer(**(WORD_TFIDF if word_settings is None else word_settings)),
            TfidfVectorizer(**(CHAR_TFIDF if char_settings is None else char_settings)))
