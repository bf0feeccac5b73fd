"""Checks before anything is spent: enough labeled rows per class, a base model that resolves, a
provider that answers. ``train`` runs :func:`preflight` after reading the data and before generation
(the paid step) and before loading or training a model.
"""

from __future__ import annotations

import socket
from typing import Any, Mapping
from urllib.parse import urlparse

from .errors import AssayError, require
from .evaluator._base_models import resolve_base
from .providers import provider_from_config

# A class with fewer labeled rows than ``data.min_rows_per_class`` is an error; below this many times
# that minimum it is a warning (the seeds and the held-out rows of that class are thin).
WARN_FACTOR = 5


def check_class_counts(label_counts: Mapping[str, int], minimum: int, source: str) -> list[str]:
    """An AssayError when a label has fewer than ``minimum`` rows; warnings for labels near it."""
    if minimum <= 0:
        return []
    thin = {lab: n for lab, n in label_counts.items() if n < minimum}
    if thin:
        listed = ", ".join(f"'{lab}' {n}" for lab, n in thin.items())
        raise AssayError(
            f"at least {minimum} labeled rows of each label in {source} "
            "(data.min_rows_per_class, --min-rows-per-class)",
            f"{listed} (all labels: {dict(label_counts)})",
            "add labeled rows of those labels, drop the label from the metric, or lower data.min_rows_per_class",
            code="too_few_rows")
    near = {lab: n for lab, n in label_counts.items() if n < minimum * WARN_FACTOR}
    if not near:
        return []
    return [f"few labeled rows for {near} in {source}: the seeds and held-out figures of "
            f"{'that label' if len(near) == 1 else 'those labels'} will be noisy "
            f"(want at least {minimum * WARN_FACTOR} per label)"]


def check_base(cfg: Any) -> None:
    """The configured base model resolves (a preset's package, a local folder or a cached hub id)."""

    if cfg.model.base_name == "smollm2":
        require("gguf", "the decoder family's SmolLM2 base (a GGUF file)", extra="decoder")
    resolve_base(cfg.model.base_name, hash_files=False)


def _reachable(url: str, timeout: float = 5.0) -> str | None:
    """None when a TCP connection to the URL's host opens, else why not."""
    u = urlparse(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        return None
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((u.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def check_providers(cfg: Any) -> None:
    """Each provider the run will call (generate:, judge:) is configured (key, endpoint) and reachable."""

    for section in ("generate", "judge"):
        pcfg = getattr(cfg, section, None)
        if pcfg is None:
            continue
        provider = provider_from_config(pcfg, cfg.base_dir)  # a missing key or base_url raises here
        url = getattr(provider, "base_url", None)
        why = _reachable(url) if isinstance(url, str) and url else None
        if why:
            raise AssayError(f"a reachable endpoint for {section}: {pcfg.model}", f"{url} did not answer ({why})",
                             f"start the server or fix {section}.base_url; nothing was generated or spent",
                             code="provider_unreachable")


def preflight(cfg: Any, test: Any) -> list[str]:
    """Every check that must pass before generation or training; returns warnings for the run's notes."""
    notes = check_class_counts(test.label_counts, cfg.data.min_rows_per_class,
                               str(cfg.path(cfg.data.test_set).name))
    check_base(cfg)
    if cfg.generate is not None or cfg.judge is not None:
        check_providers(cfg)
    if notes:
        import warnings

        for note in notes:
            warnings.warn(note, stacklevel=2)
    return notes
