"""``assay tune-judge`` and ``assay judge-consistency``: work on the judge prompt before distilling it.

Both read a run config: its metric, its judge (``judge:``, or ``--judge provider/model``) and its seed
rows (``data.test_set`` split as ``assay train`` splits it; the held-out rows are never read by either).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import AssayError
from ._app import cli, emit, output_option


def _load(config_path: str, judge: str | None) -> tuple[Any, Any, list[dict[str, Any]], Any]:
    """(config, metric, seed rows, judge provider config) from a run config."""
    from ..config import ProviderConfig, load_config

    if not Path(config_path).is_file():
        raise AssayError("a run config YAML file", f"no file at {config_path}",
                         "pass the path of a config (see examples/*/config.yaml)", code="not_found")
    cfg = load_config(config_path)
    metric = cfg.metric_spec()
    pcfg = ProviderConfig(model=judge) if judge else cfg.judge
    if pcfg is None:
        raise AssayError("a judge provider", f"no 'judge:' in {Path(config_path).name} and no --judge",
                         "add judge: {model: provider/model} to the config, or pass --judge openai/gpt-4o-mini",
                         code="invalid_config")
    seeds = cfg.prepare_test_set(metric).split.seeds
    return cfg, metric, seeds, pcfg


def _provider(cfg: Any, pcfg: Any) -> Any:
    from ..providers import provider_from_config

    return provider_from_config(pcfg, cfg.base_dir)


def _out_dir(cfg: Any, metric: Any, out: str | None) -> Path:
    if out:
        return Path(out)
    return cfg.output_dir().parent / f"{metric.name}-judge"


def _say(quiet: bool, as_json: bool):
    def show(message: str) -> None:
        if not quiet:
            click.echo(f"[tune-judge] {message}", err=True)
    return show


@cli.command("tune-judge")
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path())
@click.option("--rounds", type=click.IntRange(min=1, max=20), default=3, show_default=True,
              help="Revision rounds at most.")
@click.option("--candidates", type=click.IntRange(min=0, max=10), default=2, show_default=True,
              help="Revised prompts asked of the provider per round (plus one few-shot candidate).")
@click.option("--budget", type=click.FloatRange(min=0), default=None,
              help="Dollars for the run: a round that would take the total (with the final test measurement) "
                   "past it is not started.")
@click.option("--judge", default=None, help="provider/model instead of the config's judge:.")
@click.option("--seed", type=int, default=0, show_default=True)
@output_option("Folder for metric.yaml, tune_report.json and tune_report.md (default: runs/<metric>-judge).",
               name="out", default=None)
@click.option("--overwrite", is_flag=True, help="Replace a tuning report already in the folder.")
@click.option("--estimate", is_flag=True, help="Print the judge calls, tokens and dollars it would take; call nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def tune_judge_cmd(config_path: str, rounds: int, candidates: int, budget: float | None, judge: str | None,
                   seed: int, out: str | None, overwrite: bool, estimate: bool, as_json: bool, quiet: bool) -> None:
    """Tune the config's judge prompt against its human-labeled seed rows.

    Writes the tuned metric (same name; use it as `metric:` in the config, then `assay train`), and a
    report: kappa per round with intervals, every candidate prompt, the cost, the rows used for what,
    and the final kappa of the start and the chosen prompt on seed rows the search never saw."""
    from ..judge import tune_judge
    from ..judge._report import FILES

    cfg, metric, seeds, pcfg = _load(config_path, judge)
    if estimate:  # no provider is built: no key needed, nothing sent
        from ..judge._estimate import estimate_tuning
        from ..providers import PriceTable
        from ..providers._settings import org_prices

        prices = PriceTable({**org_prices(), **{k: v.model_dump() for k, v in pcfg.prices.items()}})
        est = estimate_tuning(metric, seeds, judge=pcfg.model, rounds=rounds, candidates=candidates, seed=seed,
                              prices=prices)
        usd = "unpriced" if est["usd"] is None else f"about ${est['usd']:.2f}"
        emit(est, as_json, f"{est['judge_calls']} judge calls ({est['judge_calls_per_round']} per round) and "
                           f"{est['writer_calls']} revision calls; about {est['input_tokens']:,} input and "
                           f"{est['output_tokens']:,} output tokens; {usd} with {est['judge']} (at most: every "
                           "candidate valid, no early stop)")
        return
    folder = _out_dir(cfg, metric, out)
    if (folder / FILES["report"]).exists() and not overwrite:
        raise AssayError("a new folder for the tuning report", f"a tuning report already at {folder}",
                         "pass --overwrite to replace it, or choose another folder with --output", code="output_exists")
    provider = _provider(cfg, pcfg)
    result = tune_judge(metric, seeds, provider, rounds=rounds, budget_usd=budget, seed=seed, candidates=candidates,
                        progress=_say(quiet, as_json))
    files = result.write(folder)
    summary = {**result.summary(), "files": files}
    s, c = result.report["final_test"]["start"], result.report["final_test"]["chosen"]
    text = (f"test kappa: start {_k(s)} -> chosen {_k(c)} ({result.report['rows']['test']['n']} rows never seen "
            f"by the search); stopped: {result.report['stopped']}; cost ${result.report['cost']['usd']:.4f}\n"
            f"wrote {files['metric']}, {files['report']}, {files['markdown']}\n"
            f"next: set `metric: {files['metric']}` in {Path(config_path).name}, then `assay train`")
    emit(summary, as_json, text)


def _k(a: dict[str, Any]) -> str:
    iv = a.get("interval")
    k = a.get("kappa")
    return ("undefined" if k is None else f"{k:.3f}") + (f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv else "")


@cli.command("judge-consistency")
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path())
@click.option("--samples", type=click.IntRange(min=2, max=50), default=5, show_default=True,
              help="Answers per row at --temperature.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=0.7, show_default=True)
@click.option("--paraphrase", "paraphrases", multiple=True, type=click.Path(),
              help="A text file with a paraphrased judge prompt (repeatable): the prompts at temperature 0 "
                   "instead of samples.")
@click.option("--judge", default=None, help="provider/model instead of the config's judge:.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Judge at most this many seed rows.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-questions", is_flag=True, help="Deterministic questions, no provider call for them.")
@output_option("Folder for ambiguous.jsonl and consistency.json (default: runs/<metric>-judge).", name="out",
               default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def judge_consistency_cmd(config_path: str, samples: int, temperature: float, paraphrases: tuple[str, ...],
                          judge: str | None, limit: int | None, seed: int, no_questions: bool, out: str | None,
                          as_json: bool) -> None:
    """Judge each seed row several times; export the rows whose verdict flips, with a question for the expert."""
    import json

    from ..judge import judge_consistency

    texts = []
    for p in paraphrases:
        if not Path(p).is_file():
            raise AssayError("a text file with a paraphrased prompt", f"no file at {p}",
                             "write the prompt (with the metric's placeholders) to a file", code="not_found")
        texts.append(Path(p).read_text(encoding="utf-8"))
    cfg, metric, seeds, pcfg = _load(config_path, judge)
    provider = _provider(cfg, pcfg)
    rows = seeds[:limit] if limit else seeds
    result = judge_consistency(metric, rows, provider, samples=samples, temperature=temperature,
                               paraphrases=texts or None, seed=seed, ask=not no_questions)
    folder = _out_dir(cfg, metric, out)
    export = result.write_jsonl(folder / "ambiguous.jsonl")
    (folder / "consistency.json").write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str),
                                             encoding="utf-8")
    summary = {**result.summary(), "export": str(export), "report": str(folder / "consistency.json")}
    lines = [f"{len(result.ambiguous)} of {result.rows} rows flip ({result.mode}); exported to {export}"]
    lines += [f"- {a.id} {a.counts}: {a.question}" for a in result.ambiguous[:10]]
    emit(summary, as_json, "\n".join(lines))
