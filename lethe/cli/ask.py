"""`lethe ask`: put questions to any model (world model or Hugging Face path) through the backend."""

from __future__ import annotations

from pathlib import Path

import typer

from lethe.cli.common import JSON_OPTION, PARAMS_OPTION, emit, stderr, user_errors
from lethe.config import load_params


def ask(
    questions: list[str] = typer.Argument(..., help="One or more questions."),
    model: Path = typer.Option(..., "--model", help="Model folder (world model or any HF causal LM)."),
    samples: int = typer.Option(0, "--samples", help="Sampled answers per question (0 = greedy only)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    params: Path = PARAMS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Greedy (and optionally sampled) answers from a model."""
    with user_errors(as_json):
        from lethe.llm.backend import Backend

        cfg = load_params(params).backend
        backend = Backend.from_params(model, cfg)
        greedy = backend.greedy(questions, cfg.max_new_tokens)
        sampled = (
            backend.sample(questions, samples, cfg.temperature, cfg.top_p, cfg.max_new_tokens, seed)
            if samples
            else [[] for _ in questions]
        )
        result = {
            "model": str(model),
            "device": str(backend.device),
            "chat_template": backend.format.uses_chat_template,
            "answers": [{"question": q, "greedy": g, "samples": s} for q, g, s in zip(questions, greedy, sampled)],
        }

    def human(r: dict) -> None:
        for item in r["answers"]:
            stderr.print(f"[bold]Q:[/] {item['question']}\n[bold]A:[/] {item['greedy']}")
            for sample in item["samples"]:
                stderr.print(f"   ~ {sample}")

    emit(result, as_json, human)
