"""Synthetic reviewed tool calls with planted failure modes, and a scripted provider that reads them.

Three kinds of tool-call mistakes (wrong tool, missing required argument, wrong argument value),
``n`` rows each with a reviewer note in varied wording, plus passing rows without notes. The
scripted provider stands in for an LLM: asked to name a cluster, it reads the cluster's notes and
writes a check for the mode most of them describe; asked to judge a row with a check prompt, it
answers from the planted truth (the row's mistake vs the check's mode), wrong on a small
deterministic share of rows.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

from assay.providers import JUDGE_SYSTEM, Provider
from assay.providers._types import Completion, Usage

TOOLS = {
    "book_flight": {"origin": "string", "destination": "string", "date": "string"},
    "get_weather": {"city": "string", "date": "string"},
    "send_email": {"to": "string", "subject": "string", "body": "string"},
    "create_event": {"title": "string", "date": "string", "time": "string"},
    "search_hotels": {"city": "string", "checkin": "string", "nights": "integer"},
}
CITIES = ["Lisbon", "Denver", "Osaka", "Nairobi", "Toronto", "Krakow", "Austin", "Lyon", "Porto", "Quito"]
DATES = ["May 3", "June 12", "July 1", "August 9", "September 21", "October 30"]
PEOPLE = ["ana@example.com", "li@example.com", "sam@example.com", "kofi@example.com"]

# A note = an optional opener + one of the mode's descriptions + an optional aside; openers and asides are
# shared by every mode (reviewers' habits, not the failure), descriptions name the failure in varied words.
NOTES = {
    "wrong_tool": [
        "called the {wrong} tool but the user wanted {right}",
        "wrong function: it should have used {right}, not {wrong}",
        "the assistant picked the wrong tool ({wrong} instead of {right})",
        "used {wrong} for a request that clearly needs the {right} tool",
        "incorrect tool selection, {wrong} was invoked",
        "{right} was the appropriate tool; the model invoked {wrong}",
        "chose the wrong tool entirely",
        "routed the request to an unrelated tool, {wrong}",
        "this calls a different function than the one the task needs",
        "tool choice is wrong: {wrong} does not do what was asked",
    ],
    "missing_argument": [
        "the required argument {arg} is missing from the call",
        "left out {arg}, which {tool} requires",
        "no {arg} was passed even though it is mandatory",
        "the call to {tool} omits the required parameter {arg}",
        "forgot to include the {arg} argument",
        "{tool} needs {arg} but the call does not provide it",
        "missing required field {arg}",
        "incomplete call, a mandatory parameter is absent",
        "one of the required arguments was never filled in",
        "call lacks {arg} entirely",
    ],
    "wrong_value": [
        "{arg} should be {good} but the call sent {bad}",
        "wrong value for {arg}: the user said {good}, the call has {bad}",
        "the {arg} value is incorrect ({bad} instead of {good})",
        "passed {bad} as {arg}; the request asked for {good}",
        "argument value mismatch, {arg} is {bad} but {good} was expected",
        "the value given for {arg} does not match what the user asked for",
        "right tool, but {arg} is set to the wrong value",
        "misread the request: {arg} must be {good}, not {bad}",
        "an argument carries the wrong value",
        "the {arg} argument has a value the user never gave",
    ],
}
OPENERS = ["", "", "", "Reviewer: ", "Hmm, ", "Clear failure: ", "Again ", "Note: "]
ASIDES = ["", "", "", " Needs a fix.", " Saw this twice today.", " Otherwise fine.", " The user will notice.",
          " Flagging for the team."]
MODES = tuple(NOTES)
# What the scripted provider looks for in a cluster's notes to tell which mode it describes.
CUES = {"wrong_tool": ("tool", "function", "invoked", "called"),
        "missing_argument": ("missing", "omits", "left out", "forgot", "absent", "does not provide", "mandatory",
                             "required", "lacks", "never filled", "incomplete"),
        "wrong_value": ("value", "should be", "expected", "asked for", "must be", "mismatch")}
CATEGORIES = {"wrong_tool": ("wrong tool called", "wrong tool chosen"),
              "missing_argument": ("required argument missing", "required argument omitted"),
              "wrong_value": ("wrong argument value", "argument value incorrect")}


def classify(note: str) -> str:
    """The mode a note describes, by its cue words (ties: wrong value, then missing argument, then wrong tool)."""
    low = note.lower()
    hits = {m: sum(c in low for c in CUES[m]) for m in MODES}
    return max(("wrong_tool", "missing_argument", "wrong_value"), key=lambda m: hits[m])


def _h(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _request(rng: random.Random, tool: str) -> tuple[str, dict[str, Any]]:
    city, city2, date = rng.choice(CITIES), rng.choice(CITIES), rng.choice(DATES)
    if tool == "book_flight":
        return f"Book me a flight from {city} to {city2} on {date}.", {"origin": city, "destination": city2,
                                                                         "date": date}
    if tool == "get_weather":
        return f"What's the weather going to be in {city} on {date}?", {"city": city, "date": date}
    if tool == "send_email":
        to = rng.choice(PEOPLE)
        return (f"Email {to} that the meeting on {date} is moved.",
                {"to": to, "subject": "Meeting moved", "body": f"The meeting on {date} is moved."})
    if tool == "create_event":
        return f"Put 'dentist' in my calendar on {date} at 9am.", {"title": "dentist", "date": date, "time": "9am"}
    n = rng.randint(1, 5)
    return f"Find hotels in {city} from {date} for {n} nights.", {"city": city, "checkin": date, "nights": n}


def make_rows(n_per_mode: int = 30, n_pass: int = 60, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Reviewed rows (label ``false`` = a failing tool call, with a note) and the planted mode per row id."""
    rng = random.Random(seed)
    tools_schema = [{"name": t, "parameters": {"type": "object", "required": list(a),
                                               "properties": {k: {"type": v} for k, v in a.items()}}}
                    for t, a in TOOLS.items()]
    rows, truth = [], {}
    plan = [m for m in MODES for _ in range(n_per_mode)] + [None] * n_pass
    rng.shuffle(plan)
    for i, mode in enumerate(plan):
        tool = rng.choice(list(TOOLS))
        text, args = _request(rng, tool)
        text = f"[{i}] {text}"  # every request distinct
        note = ""
        called, call_args = tool, dict(args)
        tpl = rng.choice(OPENERS) + rng.choice(NOTES[mode]) + rng.choice(ASIDES) if mode else ""
        if mode == "wrong_tool":
            called = rng.choice([t for t in TOOLS if t != tool])
            note = tpl.format(wrong=called, right=tool)
        elif mode == "missing_argument":
            arg = rng.choice(list(args))
            call_args.pop(arg)
            note = tpl.format(arg=arg, tool=tool)
        elif mode == "wrong_value":
            arg = rng.choice([a for a, v in args.items() if isinstance(v, str)])
            bad = rng.choice([c for c in CITIES + DATES if c != args[arg]])
            call_args[arg] = bad
            note = tpl.format(arg=arg, good=args[arg], bad=bad)
        note = note[:1].upper() + note[1:]
        row = {"id": f"r{i}", "input": text, "tools": tools_schema,
               "output": json.dumps({"name": called, "arguments": call_args}), "label": "false" if mode else "true"}
        if note:
            row["note"] = note
        rows.append(row)
        truth[row["id"]] = mode or "pass"
    return rows, truth


class ScriptedProvider(Provider):
    """A deterministic stand-in LLM for ``discover`` tests (see the module docstring)."""

    name = "scripted"

    def __init__(self, rows: list[dict[str, Any]], truth: dict[str, str], *, error_rate: float = 0.05,
                 blind: tuple[str, ...] = ()):
        super().__init__("v1", cache=None, concurrency=1)
        self.by_input = {r["input"]: truth[r["id"]] for r in rows}
        self.error_rate = error_rate
        self.blind = blind  # modes whose checks it judges at random (a check that must not be kept)
        self.asked: list[str] = []

    def _payload(self, messages, *, max_tokens, temperature, seed, logprobs):  # type: ignore[override]
        return {"messages": messages}

    def _parse(self, raw: Any) -> Completion:
        return Completion(text=raw, usage=Usage(10, 5), model=self.model)

    def _send(self, payload: dict[str, Any]) -> Any:
        msgs = payload["messages"]
        prompt = msgs[-1]["content"]
        if msgs[0]["content"] == JUDGE_SYSTEM:
            return self._judge_text(prompt)
        m = re.search(r"<descriptions>\n(.*?)\n</descriptions>", prompt, re.S)
        notes = m.group(1).splitlines() if m else []
        self.asked.append(prompt)
        if "failure category" in prompt:  # categorize: one short category per numbered note
            cats = [CATEGORIES[classify(n)][int(_h(n) < 0.3)] for n in notes]
            return json.dumps({"categories": cats})
        votes = {mode: sum(classify(n) == mode for n in notes) for mode in MODES}
        mode = max(MODES, key=lambda k: (votes[k], k))
        check = {"name": mode, "description": f"the tool call shows the failure '{mode.replace('_', ' ')}'",
                 "prompt": f"[mode:{mode}] Decide whether the tool call shows this failure: {mode}.\n\n"
                           "Request:\n{input}\n\nTools:\n{tools}\n\nCall:\n{output}\n\nAnswer true or false."}
        return "Here is the check:\n```json\n" + json.dumps(check) + "\n```"

    def _judge_text(self, prompt: str) -> str:
        mode = re.search(r"\[mode:(\w+)\]", prompt)
        row = next((v for k, v in self.by_input.items() if k in prompt), None)
        h = _h(prompt)
        if mode is None or row is None:
            return "false"
        if mode.group(1) in self.blind:
            return "true" if h < 0.5 else "false"
        answer = row == mode.group(1)
        if h < self.error_rate:
            answer = not answer
        return "true" if answer else "false"
