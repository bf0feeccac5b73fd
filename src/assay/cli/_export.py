"""``assay export``: an artifact's scoring graph for other runtimes (ONNX)."""

from __future__ import annotations

import click

from ..errors import AssayError
from ._app import cli, emit


@cli.command("export")
@click.argument("artifact", type=click.Path())
@click.option("--onnx", "onnx_out", type=click.Path(), help="Write the scoring graph (input_ids, attention_mask "
              "-> label logits) to this .onnx file (or folder), with model.json and the tokenizer beside it.")
@click.option("--opset", type=click.IntRange(min=14), default=17, show_default=True, help="ONNX opset.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export_cmd(artifact: str, onnx_out: str | None, opset: int, as_json: bool) -> None:
    """Export an encoder-family ARTIFACT for another runtime (pip install 'assay[onnx]').

    ONNX Runtime scores the graph as the Evaluator does (logits within 1e-4); tokenisation stays
    outside the graph, and model.json says how logits become calibrated scores.
    """
    from ..evaluator import Evaluator, read_info
    from ..evaluator._export import export_onnx

    if not onnx_out:
        raise AssayError("a target format", "no --onnx", "pass --onnx OUT.onnx", code="invalid_input")
    family = read_info(artifact).get("family")
    if family != "encoder":
        raise AssayError("an encoder-family artifact to export to ONNX", f"family {family}",
                         "export an artifact trained with model.family: encoder", code="invalid_input")
    ev = Evaluator.from_pretrained(artifact, device="cpu", precision="fp32")
    out = export_onnx(ev, onnx_out, opset=opset)
    emit(out, as_json, f"wrote {out['onnx']} (labels {', '.join(out['labels'])}), {out['metadata']}, "
                       f"tokenizer {out['tokenizer']}")
