"""Failure descriptions made comparable before they are embedded.

Reviewer notes name the row's own things (tools, arguments, values, people), and a sentence encoder
groups notes by those as readily as by the failure. Two steps take them out:

- ``mask_entities``: words of a note that also occur in its row (request, response, context, and
  the tool and parameter names of its schemas), identifiers (``snake_case``, digits, e-mail
  addresses) become ``X``. Always applied; no provider needed.
- ``categorize``: the provider rewrites each masked note as a short generic failure category
  ("wrong tool called", "required argument missing"), batch by batch, shown the categories it
  used so far so that the same failure gets the same words. A batch whose answer is not a JSON
  list of the right length keeps its masked notes (counted in the report).
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

from ..errors import AssayError

_WORD = re.compile(r"[A-Za-z0-9_@.\-]+")
_SPLIT = re.compile(r"(\s+|[,;:()\[\]{}\"'=/])")
PLACEHOLDER = "X"

ASK = """Reviewers described why each of these AI responses failed. Rewrite each description as a short,
generic failure category (3 to 8 words): what kind of mistake it is, without names, values or ids.
Give the same words to descriptions of the same kind of mistake.
{known}
<descriptions>
{notes}
</descriptions>

Answer with one JSON object only: {{"categories": ["...", "..."]}}, one category per description, in order
({n} in all)."""


def _stop_words() -> frozenset[str]:
    try:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        return frozenset(ENGLISH_STOP_WORDS)
    except ImportError:  # pragma: no cover - sklearn ships with the train extra
        return frozenset()


def _words(value: Any) -> set[str]:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return {w.lower().strip(".-") for w in _WORD.findall(text)}


def _schema_names(value: Any, out: set[str]) -> None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k == "name" and isinstance(v, str):
                out.add(v.lower())
            if k == "properties" and isinstance(v, Mapping):
                out.update(str(p).lower() for p in v)
            _schema_names(v, out)
    elif isinstance(value, list):
        for v in value:
            _schema_names(v, out)


def row_entities(row: Mapping[str, Any]) -> set[str]:
    """Content words of a row (not stop words): the things a note about it may name."""
    found: set[str] = set()
    for f in ("input", "output", "output_b", "context"):
        if row.get(f) not in (None, ""):
            found |= _words(row[f])
    _schema_names(row.get("tools"), found)
    stop = _stop_words()
    return {w for w in found if len(w) > 1 and w not in stop}


def mask_entities(note: str, row: Mapping[str, Any]) -> str:
    """``note`` with the row's own names and values, and identifiers, replaced by ``X``."""
    ents = row_entities(row)
    out = []
    for tok in _SPLIT.split(note):
        core = tok.strip(".!?").lower()
        if core and (core in ents or re.search(r"[_@\d]", core)):
            out.append(PLACEHOLDER + tok[len(tok.rstrip(".!?")):])
        else:
            out.append(tok)
    text = re.sub(rf"\b{PLACEHOLDER}(\s*{PLACEHOLDER})+\b", PLACEHOLDER, "".join(out))
    return " ".join(text.split())


def _parse(text: str, n: int) -> list[str] | None:
    from ._propose import _json_object

    obj = _json_object(text)
    cats = obj.get("categories") if obj else None
    if not isinstance(cats, list) or len(cats) != n or not all(isinstance(c, str) and c.strip() for c in cats):
        return None
    return [" ".join(c.split())[:120] for c in cats]


def categorize(provider: Any, notes: Sequence[str], *, batch: int = 20) -> tuple[list[str], int]:
    """(a category per note, how many notes kept their own text because an answer was unusable)."""
    out: list[str] = []
    kept_raw = 0
    known: list[str] = []
    for start in range(0, len(notes), batch):
        part = list(notes[start:start + batch])
        seen = ("Categories used so far (reuse them when they fit): " + "; ".join(known[:40]) + "\n") if known else ""
        prompt = ASK.format(known=seen, notes="\n".join(f"{i + 1}. {n}" for i, n in enumerate(part)), n=len(part))
        try:
            cats = _parse(provider.generate(prompt, max_tokens=40 * len(part) + 50, temperature=0.0, seed=0).text,
                          len(part))
        except AssayError:  # a failed request keeps the masked notes; discovery goes on
            cats = None
        if cats is None:
            out += part
            kept_raw += len(part)
            continue
        out += cats
        known += [c for c in dict.fromkeys(cats) if c not in known]
    return out, kept_raw
