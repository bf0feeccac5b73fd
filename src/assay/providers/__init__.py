"""LLM providers: one small interface over OpenAI-compatible endpoints, Anthropic and a mock.

``get_provider("openai/gpt-4o-mini")`` gives a Provider with ``generate(prompt) -> Completion``
and ``judge(metric, row) -> Judgment``; requests are cached in SQLite, retried, rate-limited
and priced. ``label_rows`` and ``measure_judge`` use a provider as the teacher.
"""

from ._base import JUDGE_SYSTEM, Provider
from ._cache import RequestCache, open_cache, request_key
from ._judge import LabelResult, answer_counts, label_rows, measure_judge
from ._parse import label_probabilities, label_words, parse_label
from ._prices import DEFAULT_PRICES, PriceTable
from ._registry import get_provider, provider_from_config, split_name
from ._server import ServerProviders
from ._settings import assay_home, default_cache_path
from ._types import Completion, Judgment, ProviderError, RetryableError, Stats, Usage

__all__ = [
    "DEFAULT_PRICES",
    "JUDGE_SYSTEM",
    "Completion",
    "Judgment",
    "LabelResult",
    "PriceTable",
    "Provider",
    "ProviderError",
    "RequestCache",
    "RetryableError",
    "ServerProviders",
    "Stats",
    "Usage",
    "answer_counts",
    "assay_home",
    "default_cache_path",
    "get_provider",
    "label_probabilities",
    "label_rows",
    "label_words",
    "measure_judge",
    "open_cache",
    "parse_label",
    "provider_from_config",
    "request_key",
    "split_name",
]
