"""Evaluation reports: one metrics JSON, a markdown table, and two plots per run."""

from __future__ import annotations

import json
import math
from pathlib import Path

from lethe.evaluate import metrics

HEADLINE = metrics.keys(report=True)  # the report table's rows (lethe.evaluate.metrics)
AUDIT = metrics.keys(audit=True)


def public(values: dict) -> dict:
    """Metrics without private per-sample arrays (keys starting with '_')."""
    return {k: v for k, v in values.items() if not k.startswith("_")}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def markdown_table(before: dict, after: dict | None = None, reference: dict | None = None) -> str:
    """Metric | before | after | after/before | never-trained reference, for the headline metrics present."""
    if after is None:
        lines = ["| metric | value |", "|---|---|"]
        return "\n".join(lines + [f"| {k} | {_fmt(before[k])} |" for k in HEADLINE if k in before]) + "\n"
    reference = reference or {}
    lines = ["| metric | before | after | after / before | never-trained reference |", "|---|---|---|---|---|"]
    for key in HEADLINE:
        if key not in before and key not in after:
            continue
        b, a = before.get(key), after.get(key)
        ratio = a / b if a is not None and b else None
        lines.append(f"| {key} | {_fmt(b)} | {_fmt(a)} | {_fmt(ratio)} | {_fmt(reference.get(key))} |")
    return "\n".join(lines) + "\n"


def _cell(text, width: int = 70) -> str:
    if text is None:
        return "n/a"
    if isinstance(text, float):
        return f"{text:.2f}"
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= width else text[: width - 1] + "…"


def probe_table(rows: list[dict]) -> str:
    """The held-out probes, one row each: what the unlearned model answers, and what it and the
    never-trained reference answer after the relearning attack (lethe.evaluate.runner.heldout_probe_rows)."""
    lines = ["## Held-out probes", "",
             "After the first relearning attack; recall is over every attack, ROUGE-L and (new) only the facts "
             "(function words aside) the attack's rows and the question did not contain.", "",
             "| node | question | expected | after | after, attacked | reference, attacked | recall attacked "
             "(after / reference) | new facts (after / reference) |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(" | ".join([
            "", _cell(row["node"], 30), _cell(row["question"]), _cell(row["expected"]), _cell(row.get("after")),
            _cell(row.get("after_attacked")), _cell(row.get("reference_attacked")),
            f"{_cell(row.get('after_attacked_rouge'))} / {_cell(row.get('reference_attacked_rouge'))}",
            f"{_cell(row.get('after_attacked_novel'))} / {_cell(row.get('reference_attacked_novel'))}", ""]).strip())
    return "\n".join(lines) + "\n"


def _save(fig, path_prefix: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = path_prefix.with_name(f"{path_prefix.name}_{name}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def plot_report(before: dict, after: dict, path_prefix: Path, reference: dict | None = None) -> list[str]:
    """forget-vs-utility before/after, and per-probe bars; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, m, color in (("before", before, "#1f77b4"), ("after", after, "#d62728")):
        ax.scatter(m.get(metrics.MODEL_UTILITY, math.nan), m.get(metrics.FORGET_ROUGE, math.nan), s=90, c=color,
                   label=label)
    ax.set_xlabel("model utility (higher is better)")
    ax.set_ylabel("forget ROUGE-L recall (lower is better)")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.set_title("Forgetting vs utility")
    paths.append(_save(fig, path_prefix, "forget_vs_utility"))

    keys = [k for k in HEADLINE if k.startswith(("probe_", "neighbor", "mia_")) and k in before]
    if keys:
        fig, ax = plt.subplots(figsize=(9, 4))
        x = range(len(keys))
        ax.bar([i - 0.2 for i in x], [before[k] for k in keys], width=0.4, label="before")
        ax.bar([i + 0.2 for i in x], [after.get(k, math.nan) for k in keys], width=0.4, label="after")
        ax.set_xticks(list(x), [k.replace("probe_", "").replace("_", " ") for k in keys], rotation=35, ha="right",
                      fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.legend()
        ax.set_title("Probes (forget probes: lower is better; neighbor: higher is better; MIA AUC: 0.5 is ideal)")
        paths.append(_save(fig, path_prefix, "probes"))

    keys = [k for k in AUDIT if after.get(k) is not None]
    if keys:
        fig, ax = plt.subplots(figsize=(9, 4))
        x = range(len(keys))
        series = (("before", before), ("after", after), ("never-trained reference", reference or {}))
        for offset, (label, m) in zip((-0.27, 0.0, 0.27), series):
            values = [m.get(k) if m.get(k) is not None else math.nan for k in keys]
            ax.bar([i + offset for i in x], values, width=0.27, label=label)
        ax.set_xticks(list(x), [k.replace("_", " ") for k in keys], rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
        ax.set_title("Audit on data the unlearning never saw (lower is better; the reference is the floor)")
        paths.append(_save(fig, path_prefix, "audit"))
    return paths


def write_report(out_dir: Path, before: dict, after: dict | None, extra: dict | None = None,
                 reference: dict | None = None) -> dict:
    """metrics.json, report.md and plots in out_dir; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"before": public(before), "after": public(after) if after else None, **(extra or {})}
    (out_dir / "metrics.json").write_text(json.dumps(payload, indent=1, default=float))
    probes = (extra or {}).get("heldout_probes")
    (out_dir / "report.md").write_text("# Evaluation\n\n" + markdown_table(before, after, reference)
                                       + ("\n" + probe_table(probes) if probes else ""))
    plots = plot_report(before, after, out_dir / "report", reference) if after else []
    return {"metrics_path": str(out_dir / "metrics.json"), "report_path": str(out_dir / "report.md"), "plots": plots}
