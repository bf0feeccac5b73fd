"""A deterministic mock provider for tests: no network, same answer for the same request.

Everything is derived from a hash of the model name and the request, so runs repeat exactly.

As a generator it reads the seed rows in a generation prompt (the ``<seeds>`` block written by
``assay.synth``) and writes mutated rows for the requested label and strategy. As a judge it
answers with a label word in varied formats (plain, capitalised, with a rationale, JSON).

options:
  agree_with: a row field (dotted path, e.g. ``label`` or ``meta.lineage.intended_label``)
      whose value the judge reveals; without it the judge's label is hash-based.
  accuracy: how often the judge agrees with that field (default 0.9; the rest are wrong).
  refuse_rate: share of judge answers that are refusals (unparseable; default 0).
  logprobs: give top logprobs with judge answers (default true).
  echo_texts / echo_rate: with probability echo_rate a generated row copies one of these
      texts (lightly edited): a stand-in for a generator that leaks test data.
  malformed_rate: share of generation answers that are not valid JSON (default 0).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from typing import Any, Mapping

from ..metrics import MetricSpec
from ._base import JUDGE_SYSTEM, Provider
from ._types import Completion, Usage

FILLERS = ["honestly", "really", "just", "today", "again", "actually", "for real", "right now", "as usual",
           "by the way", "to be fair", "of course", "at least", "in the end", "once more", "so far",
           "this week", "last night", "no doubt", "for sure", "as always", "believe me", "seriously",
           "frankly", "in fact", "after all", "anyway", "at last", "on purpose", "for now"]
NAMES = ["Maria Lopez", "John Carter", "Aiko Tanaka", "Omar Haddad", "Priya Nair", "Lukas Weber",
         "Chen Wei", "Fatima Diallo", "Sofia Rossi", "Ivan Petrov", "Grace Kim", "Mateo Silva"]
CITIES = ["Lisbon", "Denver", "Osaka", "Nairobi", "Toronto", "Krakow", "Austin", "Lyon", "Porto", "Quito"]


def _rng(*parts: Any) -> random.Random:
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return random.Random(int(h[:16], 16))


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def dig(row: Mapping[str, Any], path: str) -> Any:
    cur: Any = row
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


class MockProvider(Provider):
    name = "mock"
    supports_logprobs = True

    def _payload(self, messages, *, max_tokens, temperature, seed, logprobs):  # type: ignore[override]
        return {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                "seed": seed, "logprobs": logprobs}

    def _judge_completion(self, metric: MetricSpec, row: Mapping[str, Any], max_tokens: int) -> Completion:
        messages = [{"role": "system", "content": JUDGE_SYSTEM},
                    {"role": "user", "content": self.judge_prompt(metric, row)}]
        payload = self._payload(messages, max_tokens=max_tokens, temperature=0.0, seed=0, logprobs=10)
        path = self.options.get("agree_with")
        payload["mock"] = {
            "labels": {lab: metric.verbalizer(lab).strip() for lab in metric.labels},
            "reveal": dig(row, path) if path else None,
        }
        return self._call(payload)

    # --- the fake server -----------------------------------------------------------------
    def _send(self, payload: dict[str, Any]) -> Any:
        prompt = payload["messages"][-1]["content"]
        system = payload["messages"][0]["content"] if payload["messages"][0]["role"] == "system" else ""
        key = json.dumps(payload, sort_keys=True, default=str)
        rng = _rng(self.model, key)
        logprobs = None
        if "mock" in payload or system == JUDGE_SYSTEM:
            text, logprobs = self._judge_answer(payload.get("mock") or {}, rng)
        elif "<seeds>" in prompt:
            text = self._rows_answer(prompt, rng)
        else:
            text = f"mock answer {rng.randrange(10**6)}: " + " ".join(prompt.split()[:12])
        if payload.get("max_tokens") and "<seeds>" not in prompt:
            text = " ".join(text.split(" ")[: max(1, int(payload["max_tokens"]))])
        resp: dict[str, Any] = {"text": text, "usage": {"input": _tokens(prompt + system), "output": _tokens(text)}}
        if logprobs is not None and payload.get("logprobs") and self.options.get("logprobs", True):
            resp["logprobs"] = logprobs
        return resp

    def _parse(self, raw: Any) -> Completion:
        u = raw.get("usage") or {}
        return Completion(text=raw["text"], usage=Usage(int(u.get("input", 0)), int(u.get("output", 0))),
                          model=self.model, logprobs=raw.get("logprobs"))

    def _judge_answer(self, mock: Mapping[str, Any], rng: random.Random) -> tuple[str, list[dict[str, float]] | None]:
        words: dict[str, str] = dict(mock.get("labels") or {"true": "true", "false": "false"})
        labels = list(words)
        if rng.random() < float(self.options.get("refuse_rate", 0.0)):
            return "I'm sorry, but I can't help with that request.", None
        reveal = mock.get("reveal")
        if reveal in words:
            label = reveal
            if rng.random() >= float(self.options.get("accuracy", 0.9)) and len(labels) > 1:
                label = rng.choice([x for x in labels if x != reveal])
        else:
            label = rng.choice(labels)
        word = words[label]
        style = rng.randrange(5)
        text = [word, word.capitalize() + ".", f"**{word}**", f"{word.capitalize()}. The text reads that way.",
                json.dumps({"label": word})][style]
        conf = 0.55 + 0.44 * rng.random()
        rest = (1 - conf) / max(1, len(labels) - 1)
        top = {(" " if style != 4 else "") + words[lab]: math.log(conf if lab == label else rest) for lab in labels}
        lp = [{'{"': 0.0}, {"label": 0.0}, {'":"': 0.0}, top] if style == 4 else [top]
        if style == 2:
            lp = [{"**": 0.0}, top]
        return text, lp

    def _rows_answer(self, prompt: str, rng: random.Random) -> str:
        if rng.random() < float(self.options.get("malformed_rate", 0.0)):
            return '{"rows": [{"input": "unterminated'
        seeds = _seed_block(prompt)
        target = _find(r"Target label: *(\S+)", prompt) or (seeds[0].get("label") if seeds else "true")
        strategy = _find(r"Strategy: *(\w+)", prompt) or "create"
        n = int(_find(r"Write (\d+) ", prompt) or 1)
        fields = [f.strip() for f in (_find(r"Fields: *(.+)", prompt) or "input").split(",") if f.strip()]
        echo = list(self.options.get("echo_texts") or [])
        echo_rate = float(self.options.get("echo_rate", 0.0))
        rows = []
        for i in range(n):
            if not seeds:
                break
            same = [s for s in seeds if s.get("label") == target] or seeds
            other = [s for s in seeds if s.get("label") != target] or seeds
            primary = (other if strategy == "flip" else same)[i % len(other if strategy == "flip" else same)]
            donor = rng.choice(same)
            row: dict[str, Any] = {} if strategy == "create" else {"seed_id": primary.get("id")}
            for f in fields:
                value = primary.get(f)
                if f in ("context", "tools"):
                    continue  # left out: the pipeline copies them from the seed
                if not isinstance(value, str):
                    row[f] = value
                    continue
                if echo and rng.random() < echo_rate:
                    row[f] = _typo(rng.choice(echo), rng, 1 if rng.random() < 0.5 else 0)
                else:
                    row[f] = mutate(value, str(donor.get(f) or value), strategy, rng)
            row["label"] = target
            rows.append(row)
        return json.dumps({"rows": rows}, ensure_ascii=False)


def _find(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text)
    return m.group(1).strip() if m else None


def _seed_block(prompt: str) -> list[dict[str, Any]]:
    m = re.search(r"<seeds>\n(.*?)\n</seeds>", prompt, re.S)
    out = []
    for line in (m.group(1).splitlines() if m else []):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def mutate(text: str, donor: str, strategy: str, rng: random.Random) -> str:
    """A rough, deterministic imitation of what a generator does with a seed."""
    words = text.split() or ["empty"]
    dwords = donor.split() or words
    if strategy == "paraphrase":
        words = list(words)
        for _ in range(max(1, len(words) // 6)):
            words[rng.randrange(len(words))] = rng.choice(dwords)
        words.insert(rng.randrange(len(words) + 1), rng.choice(FILLERS))
    elif strategy == "swap":
        words = [_swap(w, rng) for w in words]
        words.insert(rng.randrange(len(words) + 1), rng.choice(CITIES))
    elif strategy == "typos":
        return _typo(" ".join(words), rng, rng.randint(1, 3)) + " " + rng.choice(FILLERS)
    elif strategy == "tighten_loosen":
        if len(words) > 6 and rng.random() < 0.5:
            k = max(3, int(len(words) * rng.uniform(0.5, 0.8)))
            start = rng.randrange(len(words) - k + 1)
            words = words[start:start + k] + [rng.choice(FILLERS)]
        else:
            words = words + [rng.choice(FILLERS)] + dwords[rng.randrange(len(dwords)):][:8]
    else:  # flip, create: splice the seed with a row of the target label
        half = max(1, len(words) // 2)
        dhalf = max(1, len(dwords) // 2)
        words = words[:half] + [rng.choice(FILLERS)] + dwords[dhalf:] + [rng.choice(NAMES + CITIES)]
    return " ".join(words)


def _swap(word: str, rng: random.Random) -> str:
    if any(c.isdigit() for c in word):
        return "".join(str(rng.randrange(10)) if c.isdigit() else c for c in word)
    if word[:1].isupper() and len(word) > 2 and rng.random() < 0.5:
        return rng.choice(NAMES).split()[rng.randrange(2)]
    return word


def _typo(text: str, rng: random.Random, n: int) -> str:
    chars = list(text)
    for _ in range(n):
        if len(chars) < 4:
            break
        i = rng.randrange(len(chars) - 1)
        op = rng.randrange(3)
        if op == 0:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif op == 1:
            del chars[i]
        else:
            chars.insert(i, chars[i])
    return "".join(chars)
