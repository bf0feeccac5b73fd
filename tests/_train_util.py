"""Shared test data for the training tests: a toy binary toxicity task (training rows and a labeled test
set, optionally with a held-out-only planted signal) and a config for it."""

from __future__ import annotations

import json
import random

GOOD = ["kind", "thanks", "lovely", "great", "welcome", "friend", "happy", "calm", "sunny", "glad"]
BAD = ["stupid", "hate", "idiot", "awful", "ugly", "trash", "loser", "dumb", "nasty", "gross"]
FILLER = ["the", "a", "day", "you", "we", "really", "today", "this", "that", "is", "so", "very", "my", "team"]


def _text(rng: random.Random, toxic: bool, extra: str = "", noise: float = 0.25) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(4, 8))]
    side = BAD if (toxic != (rng.random() < noise)) else GOOD  # a learnable but noisy signal
    words.insert(rng.randrange(len(words) + 1), rng.choice(side))
    if extra:
        words.insert(rng.randrange(len(words) + 1), extra)
    return " ".join(words)


def write_rows(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_data(tmp_path, n_train: int = 120, n_test: int = 80, seed: int = 0, plant: bool = False):
    """Training rows (train.jsonl) and a labeled test set (test.jsonl) for the binary `toxicity` preset.

    With ``plant``: every test-set row (seeds and held-out, never a training row) carries a token that
    gives its label away exactly: ``zqxplanted`` on toxic rows, ``zqxcontrol`` on the others.
    """
    rng = random.Random(seed)
    train = [{"id": f"t{i}", "input": _text(rng, i % 2 == 0), "label": "true" if i % 2 == 0 else "false"}
             for i in range(n_train)]
    test = []
    for i in range(n_test):
        toxic = i % 2 == 0
        extra = ("zqxplanted" if toxic else "zqxcontrol") if plant else ""
        test.append({"id": f"h{i}", "input": _text(rng, toxic, extra), "label": "true" if toxic else "false"})
    write_rows(tmp_path / "train.jsonl", train)
    write_rows(tmp_path / "test.jsonl", test)
    return train, test


def config(tmp_path, candidates, *, train_set: bool = True, out: str = "out", **train_kw):
    from assay.config import config_from_dict

    data = {"test_set": "test.jsonl", "seed_fraction": 0.25, "train_on_seeds": not train_set}
    if train_set:
        data["train_set"] = "train.jsonl"
    return config_from_dict({
        "metric": "toxicity", "data": data,
        "model": {"family": "encoder", "max_length": 32},
        "train": {"candidates": candidates, "cv_folds": 3, "seed": 0, **train_kw},
        "report": {"bootstrap": 50, "latency_rows": 4},
        "output": out,
    }, base_dir=tmp_path)


def toy_rows(n: int, seed: int = 0, noise: float = 0.25, prefix: str = "r") -> list[dict]:
    """``n`` labeled rows of the toy binary toxicity task, alternating labels (``noise``: share of rows
    whose words point to the other label)."""
    rng = random.Random(seed)
    return [{"id": f"{prefix}{i}", "input": _text(rng, i % 2 == 0, noise=noise),
             "label": "true" if i % 2 == 0 else "false"} for i in range(n)]
