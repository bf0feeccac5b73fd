"""``assay export``: an artifact's scoring graph for other runtimes (ONNX)."""

from __future__ import annotations

import click

from ..errors import AssayError
from ._app import cli, emit


@cli.command("export")
@click.argument("artifact")
@click.option("--onnx", "onnx_out", type=click.Path(), help="Write the scoring graph (the family's inputs -> label "
              "logits per sequence) to this .onnx file (or folder), with model.json (inputs, truncation, pooling, "
              "calibration, decision) and the tokenizer beside it.")
@click.option("--opset", type=click.IntRange(min=14), default=17, show_default=True, help="ONNX opset.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export_cmd(artifact: str, onnx_out: str | None, opset: int, as_json: bool) -> None:
    """Export ARTIFACT's scoring graph (a folder or a registered metric name) for another runtime
    (pip install 'assay[onnx]').

    Every shipped family: encoder and decoder (input_ids, attention_mask; the decoder's left-padded),
    linear tfidf (word_ngrams, char_ngrams: the analyzer's n-grams), linear embed / contrastive (input_ids,
    attention_mask, and each field's ids + lexical features with grounding), hybrid and blend (both
    blocks' inputs). The graph returns raw label logits per sequence; model.json says how to prepare
    the inputs (render template, truncation: max_length, head/tail tokens), pool a row's sequences,
    calibrate (temperature, label shift) and decide (threshold). ONNX Runtime then gives the
    Evaluator's probabilities (within 1e-5 in the tests).
    """
    from ..evaluator import Evaluator, read_info
    from ..evaluator._export import export_onnx, refuse
    from ..monitor._checks import resolve_artifact

    if not onnx_out:
        raise AssayError("a target format", "no --onnx", "pass --onnx OUT.onnx", code="invalid_input")
    folder, version = resolve_artifact(artifact)  # a folder or a registered metric name (its files checked)
    info = read_info(folder)  # EvaluatorInfo (or, from older assay, the evaluator.json dict)
    refuse(info.get("family") if isinstance(info, dict) else getattr(info, "family", None))  # before loading
    ev = Evaluator.from_pretrained(folder, device="cpu", precision="fp32")
    if version is not None:  # the registered version's threshold and operator, as everywhere it scores
        from ..registry._metrics import open_version

        ev = open_version(folder, version, loader=lambda _path: ev)
    out = export_onnx(ev, onnx_out, opset=opset)
    tok = f", tokenizer {out['tokenizer']}" if out["tokenizer"] else ""
    emit(out, as_json, f"wrote {out['onnx']} ({out['family']} {out['kind']}: {', '.join(out['inputs'])} -> logits; "
                       f"labels {', '.join(out['labels'])}), {out['metadata']}{tok}")
