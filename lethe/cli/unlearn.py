"""`lethe unlearn` and `lethe evaluate`."""

from __future__ import annotations

from pathlib import Path

import typer

from lethe.cli.common import JSON_OPTION, PARAMS_OPTION, emit, progress_bars, stderr, user_errors
from lethe.config import load_params


def unlearn(
    model: Path = typer.Option(..., "--model", help="Base model folder."),
    forget_set: Path = typer.Option(..., "--forget-set", help="Forget set JSONL (from `lethe mine`)."),
    neighbor_set: Path = typer.Option(None, "--neighbor-set", help="Neighbor (retain) set JSONL."),
    method: str = typer.Option(None, "--method", help="ga, npo, ga_gd, ga_kl, npo_gd, simnpo (default: params)."),
    sage: bool = typer.Option(False, "--sage", help="Sanitize the final update with SAGE."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: beside the forget set)."),
    allow_unvalidated: bool = typer.Option(False, help="Accept a forget set with no validation report."),
    forgotten: list[str] = typer.Option([], "--forgotten", help="An entity the model already forgot (repeatable): "
                                        "no retain row is drawn from it."),
    params: Path = PARAMS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train a LoRA adapter that forgets the forget set (resumes an interrupted run)."""
    with user_errors(as_json):
        from lethe.llm.loading import check_model
        from lethe.unlearn.run import run_unlearning, training_summary

        cfg = load_params(params)
        check_model(model, cfg.backend)
        out_dir = out or forget_set.parent / f"unlearn-{method or cfg.unlearn.method}{'-sage' if sage else ''}"
        with progress_bars() as bars:
            bar = bars("unlearning")
            result = run_unlearning(cfg, model, forget_set, neighbor_set, method, out_dir, sage, allow_unvalidated,
                                    on_step=lambda s, t, rec: bar(s, t, rec["loss"]), forgotten=forgotten)

    def human(r: dict) -> None:
        stderr.print(f"adapter: {r['adapter_path']} ({r['method']}, {r['steps']} steps, stopped by {r['stopped_by']})")
        spent = training_summary(r)["note"]
        if spent:
            stderr.print(f"[yellow]{spent}[/]")
        if r.get("sage"):
            stderr.print(f"SAGE retain bias {r['sage']['mean_retain_bias_before']:.4f} -> "
                         f"{r['sage']['mean_retain_bias_after']:.4f}")

    emit(result, as_json, human)


def evaluate(
    model: Path = typer.Option(..., "--model", help="Base model folder."),
    adapter: Path = typer.Option(None, "--adapter", help="LoRA adapter to evaluate on top of the model."),
    target: list[str] = typer.Option([], "--target", help="Author(s) forgotten (default: params forget split)."),
    forget_set: Path = typer.Option(None, "--forget-set", help="Also score recall on this forget set."),
    out: Path = typer.Option(None, "--out", help="Report folder (default: beside the adapter, or artifacts/eval)."),
    params: Path = PARAMS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """TOFU metrics, probes, MIA: before (base) and after (with the adapter)."""
    with user_errors(as_json):
        from lethe.evaluate.runner import evaluate_adapter

        cfg = load_params(params)
        out_dir = out or (adapter.parent / "evaluation" if adapter else Path("artifacts/eval"))
        with stderr.status("evaluating"):
            result = evaluate_adapter(cfg, model, adapter, target, forget_set, out_dir)

    def human(r: dict) -> None:
        stderr.print(Path(r["report_path"]).read_text())
        stderr.print(f"report: {r['report_path']}  plots: {', '.join(r['plots'])}")

    emit(result, as_json, human)
