"""Toy labeled rows and configs for the synthesis tests (mock provider, no network)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from assay.config import config_from_dict
from assay.data import split_rows

WORDS = ("order delivery package parcel invoice account refund receipt ticket booking flight hotel dinner table "
         "garden kitchen window bicycle museum library concert weekend holiday morning evening meeting report "
         "project deadline budget printer laptop charger battery screen keyboard coffee sandwich bakery market "
         "river mountain forest harbor station platform train bus taxi airport luggage passport visa weather "
         "rain snow sunshine jacket umbrella shoes gym yoga class lesson teacher student homework exam grade "
         "doctor dentist pharmacy insurance bank loan mortgage salary contract office manager colleague team "
         "client supplier warehouse shipment tracking address update password login email newsletter survey "
         "feedback complaint question answer problem solution request reminder schedule calendar birthday gift").split()
FIRST = ["Maria", "John", "Aiko", "Omar", "Priya", "Lukas", "Chen", "Fatima", "Sofia", "Ivan", "Grace", "Mateo",
         "Nadia", "Pablo", "Yuki", "Ahmed", "Elena", "Tom", "Lina", "Raj"]
LAST = ["Lopez", "Carter", "Tanaka", "Haddad", "Nair", "Weber", "Wei", "Diallo", "Rossi", "Petrov", "Kim", "Silva",
        "Novak", "Garcia", "Sato", "Khan", "Popescu", "Brown", "Berg", "Patel"]


def make_rows(n: int = 160, seed: int = 0) -> list[dict[str, Any]]:
    """Binary rows for the `pii` preset: true rows name a person and a phone number."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 20)))
        if i % 2 == 0:
            text = (f"Please call {rng.choice(FIRST)} {rng.choice(LAST)} at 555-{rng.randrange(1000, 9999)} "
                    f"about the {words}")
            label = "true"
        else:
            text = f"Question about the {words}"
            label = "false"
        rows.append({"id": f"toy-{i}", "input": text, "label": label})
    return rows


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_config(tmp_path: Path, *, generate: dict[str, Any] | None = None, judge: Any = "default",
                rows: list[dict[str, Any]] | None = None, **extra: Any):
    """A config over toy rows in tmp_path; returns (config, seeds, held_out)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = write_jsonl(rows or make_rows(), tmp_path / "test.jsonl")
    g = {"model": "mock/generator", "target_size": 60, "rows_per_call": 5, "seeds_per_call": 3,
         "review_size": 50, **(generate or {})}
    if judge == "default":
        judge = {"model": "mock/teacher", "options": {"agree_with": "meta.lineage.intended_label", "accuracy": 0.8}}
    d = {"metric": "pii", "data": {"test_set": str(data), "seed_fraction": 0.25}, "output": str(tmp_path / "run"),
         "generate": g, **extra}
    if judge is not None:
        d["judge"] = judge
    cfg = config_from_dict(d, base_dir=tmp_path)
    split = split_rows(make_rows() if rows is None else rows, 0.25, 0)
    return cfg, split.seeds, split.held_out
