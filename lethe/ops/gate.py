"""The promotion gate: a pure decision over evaluation metrics, data quality and lineage.

`decide` takes numbers and returns a decision with one row per check, so the same table goes
into MLflow tags, the Prefect artifact, the audit ledger and the human summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lethe.config import GateParams

REQUIRED_LINEAGE = ("git_commit", "request_id", "params_hash", "base_model", "base_model_hash",
                    "dvc_md5.forget_set", "dvc_md5.neighbor_set")


@dataclass(frozen=True)
class Check:
    """One gate criterion: its value, its threshold, and whether it passed (None: not applicable)."""

    name: str
    value: float | str | None
    threshold: str
    passed: bool | None
    note: str = ""


@dataclass(frozen=True)
class GateDecision:
    """Passed only when every applicable check passed."""

    passed: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "passed" if self.passed else "rejected"

    @property
    def reasons(self) -> list[str]:
        """One line per failed check."""
        return [f"{c.name}: {c.value} (needs {c.threshold}){' - ' + c.note if c.note else ''}"
                for c in self.checks if c.passed is False]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "status": self.status, "reasons": self.reasons,
                "checks": [asdict(c) for c in self.checks]}


def forget_metric(metrics: Mapping[str, Any]) -> str:
    """The forgetting score of a run: TOFU forget ROUGE when the target is a benchmark author,
    else recall on the request's own forget set."""
    return "forget_Q_A_ROUGE" if metrics.get("forget_Q_A_ROUGE") is not None else "forget_set_rouge"


def decide(before: Mapping[str, Any], after: Mapping[str, Any], base_utility: float,
           data_quality_passed: bool, lineage: Mapping[str, str], gate: GateParams) -> GateDecision:
    """Gate an unlearned model.

    before / after: metrics of the starting model (the current champion, or the base model) and
    of the new one on the requested entity; base_utility: model utility of the original base
    model, so repeated requests cannot erode utility step by step.
    """
    checks: list[Check] = []
    key = forget_metric(after)
    f_before, f_after = before.get(key), after.get(key)
    if f_before is None or f_after is None:
        checks.append(Check("forget_efficacy", None, f"<= {gate.max_forget_ratio}x before", False,
                            "no forgetting metric was measured"))
    else:
        ratio = f_after / f_before if f_before > 0 else (0.0 if f_after == 0 else float("inf"))
        checks.append(Check("forget_efficacy", round(ratio, 4), f"<= {gate.max_forget_ratio}x before",
                            ratio <= gate.max_forget_ratio, f"{key} {f_before:.3f} -> {f_after:.3f}"))
    q_before, q_after = before.get("forget_quality"), after.get("forget_quality")
    if q_after is None:
        checks.append(Check("forget_quality", None, f">= {gate.min_forget_quality} and not worse", None,
                            "no retain-model reference for this entity"))
    else:
        floor = max(gate.min_forget_quality, q_before if q_before is not None else 0.0)
        checks.append(Check("forget_quality", float(f"{q_after:.4g}"), f">= {floor:.4g}", q_after >= floor))
    utility = after.get("model_utility")
    if utility is None or not base_utility:
        checks.append(Check("utility", None, f">= {gate.min_utility_ratio}x base", False, "utility not measured"))
    else:
        ratio = utility / base_utility
        checks.append(Check("utility", round(ratio, 4), f">= {gate.min_utility_ratio}x base",
                            ratio >= gate.min_utility_ratio, f"{base_utility:.3f} -> {utility:.3f}"))
    checks.append(Check("data_quality", "passed" if data_quality_passed else "failed", "GX checkpoints pass",
                        data_quality_passed if gate.require_data_quality else None))
    missing = [k for k in REQUIRED_LINEAGE if not lineage.get(k)]
    checks.append(Check("lineage", "complete" if not missing else "missing " + ", ".join(missing),
                        "every lineage tag present", not missing))
    return GateDecision(all(c.passed is not False for c in checks), checks)


def decision_table(decision: GateDecision) -> list[dict[str, Any]]:
    """Rows for a table artifact / markdown rendering."""
    return [{"check": c.name, "value": c.value, "threshold": c.threshold,
             "result": {True: "pass", False: "FAIL", None: "n/a"}[c.passed], "note": c.note}
            for c in decision.checks]
