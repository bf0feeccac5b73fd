"""A scripted provider for the judge-tuning tests: a rule-following judge and a scripted prompt writer.

As a judge it reads the rules its prompt template states (lines ``- flag: email, phone, ...``) and
applies a regex detector per named kind to the row's text: its agreement with people depends only on
what the prompt says. As a prompt writer (``WRITER_SYSTEM``) it returns the next scripted revision.
Every call is logged (kind, prompt, row hash) so tests can check which rows reached which step.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from typing import Any, Callable, Mapping, Sequence

from assay.data import row_hash
from assay.judge._candidates import WRITER_SYSTEM
from assay.judge._consistency import QUESTION_SYSTEM
from assay.metrics import MetricSpec
from assay.providers import JUDGE_SYSTEM, Completion, Provider, Usage

DETECTORS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+"),
    "phone": re.compile(r"(?:\+\d{1,3}[\s.-]?)?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b"),
    "card": re.compile(r"\b(?:\d[ -]?){13,19}\b"),
    "ssn": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
    "ip": re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b|\b[0-9a-f]{1,4}(?::[0-9a-f]{0,4}){4,7}\b", re.I),
    "iban": re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}\b"),
    "address": re.compile(r"\b\d{1,6}\s+[A-Z][\w'.-]+(?:\s+[A-Z][\w'.-]+)*\s+(?:Street|St|Avenue|Ave|Road|Rd|Lane|"
                          r"Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Apt|Suite|Square|Plaza|Highway|Hwy|"
                          r"Circle|Terrace|Parkway|Pike|Route|Loop|Trail|Alley|Crescent|Gardens|Koskikatu|strasse)\b"
                          r"|\bApt\.? ?\d+|\bSuite \d+|\b\d{5}(?:-\d{4})?\b"),
    "name": re.compile(r"\b(?:[Mm]y name is|I am|I'm|[Nn]ame:|Mr\.?|Mrs\.?|Ms\.?|Dr\.?)\s+[A-Z][\w'-]+"
                       r"|\b[A-Z][a-zà-ÿ'-]+ (?:[A-Z]\. )?[A-Z][a-zà-ÿ'-]{2,}\b"),
}
_RULE = re.compile(r"^\s*-\s*flag:\s*(.+)$", re.M)


def rules_of(template: str) -> list[str]:
    kinds: list[str] = []
    for line in _RULE.findall(template):
        kinds += [k.strip().lower() for k in line.split(",") if k.strip().lower() in DETECTORS]
    return kinds


def fires(text: str, kinds: Sequence[str]) -> list[str]:
    return [k for k in kinds if DETECTORS[k].search(text or "")]


def pii_prompt(kinds: Sequence[str], *, intro: str = "You are a privacy judge.") -> str:
    return (f"{intro} Decide whether the text contains a direct personal identifier.\n"
            f"Rules:\n- flag: {', '.join(kinds)}\n\nText:\n{{input}}\n\n"
            "Does the text contain a direct personal identifier? Answer true or false.")


def pii_metric(kinds: Sequence[str]) -> MetricSpec:
    from assay.metrics import get_preset

    return MetricSpec(**{**get_preset("pii").to_dict(), "prompt": pii_prompt(kinds)})


class ScriptedProvider(Provider):
    """``scripted/<model>``: see the module doc. ``revisions``: a list (returned in order, the last one
    repeated) or a function of the writer prompt. ``flaky``: detector kinds whose hits make the verdict
    random at temperature > 0 (the judge is unsure about them)."""

    name = "scripted"

    def __init__(self, model: str = "judge", *, revisions: Sequence[str] | Callable[[str], str] = (),
                 flaky: Sequence[str] = (), question: str | None = None, **kw: Any):
        kw.setdefault("cache", None)
        kw.setdefault("concurrency", 4)
        super().__init__(model, **kw)
        self.revisions = revisions
        self.flaky = list(flaky)
        self.question = question
        self.log: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._writes = 0

    def _payload(self, messages, *, max_tokens, temperature, seed, logprobs):  # type: ignore[override]
        return {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "seed": seed}

    def _judge_completion(self, metric: MetricSpec, row: Mapping[str, Any], max_tokens: int) -> Completion:
        messages = [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": self.judge_prompt(metric, row)}]
        payload = self._payload(messages, max_tokens=max_tokens, temperature=0.0, seed=0, logprobs=0)
        payload["row"] = {"text": str(row.get("input") or ""), "template": metric.prompt, "hash": row_hash(row)}
        return self._call(payload)

    def _send(self, payload: dict[str, Any]) -> Any:
        messages = payload["messages"]
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        prompt = messages[-1]["content"]
        with self._lock:
            step = len(self.log)
            if system == WRITER_SYSTEM:
                text = self._revision(prompt)
                self.log.append({"step": step, "kind": "write", "prompt": prompt})
            elif system == QUESTION_SYSTEM:
                text = self.question or "I cannot tell."
                self.log.append({"step": step, "kind": "question", "prompt": prompt})
            else:
                row = payload.get("row") or {"text": _text_block(prompt), "template": prompt, "hash": None}
                text = self._verdict(row, float(payload.get("temperature") or 0.0), payload.get("seed"))
                self.log.append({"step": step, "kind": "judge", "row_hash": row["hash"], "text": row["text"],
                                 "template_sha": hashlib.sha256(row["template"].encode()).hexdigest(), "answer": text})
        return {"text": text, "usage": {"input": max(1, len(system + prompt) // 4), "output": max(1, len(text) // 4)}}

    def _verdict(self, row: Mapping[str, Any], temperature: float, seed: Any) -> str:
        kinds = rules_of(row["template"])
        hits = fires(row["text"], kinds)
        if temperature > 0 and hits and set(hits) <= set(self.flaky):
            rnd = random.Random(json.dumps([row["text"], seed, temperature]))
            return rnd.choice(["true", "false"])
        return "true" if hits else "false"

    def _revision(self, prompt: str) -> str:
        if callable(self.revisions):
            return self.revisions(prompt)
        items = list(self.revisions) or ["no idea"]
        text = items[min(self._writes, len(items) - 1)]
        self._writes += 1
        return text

    def _parse(self, raw: Any) -> Completion:
        u = raw["usage"]
        return Completion(text=raw["text"], usage=Usage(u["input"], u["output"]), model=self.model)


def _text_block(prompt: str) -> str:
    m = re.search(r"Text:\n(.*)\n\nDoes the text", prompt, re.S)
    return m.group(1) if m else prompt
