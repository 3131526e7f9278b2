"""The metric catalogue: every key the evaluation writes is declared once, and the gate, the report,
the flow and the CLI read the declared constants instead of spelling keys again."""

import ast
from pathlib import Path

import pytest

from lethe.evaluate import metrics
from lethe.evaluate.audit import audit_model
from lethe.llm.backend import Backend
from tests.architectures import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]
READERS = [ROOT / "lethe/ops/gate.py", ROOT / "lethe/evaluate/report.py", *sorted((ROOT / "lethe/pipeline").rglob("*.py")),
           *sorted((ROOT / "lethe/cli").glob("*.py"))]


def test_keys_are_declared_once_and_filtered_by_where_they_show():
    assert len(metrics.METRICS) == len(set(metrics.METRICS))
    with pytest.raises(ValueError, match="declared twice"):
        metrics.metric(metrics.HELDOUT_ROUGE, "again", "lower")
    assert metrics.HELDOUT_ROUGE in metrics.keys(summary=True) and metrics.ENTITY_ROUGE not in metrics.keys(report=True)
    assert set(metrics.keys(audit=True)) == {metrics.HELDOUT_ROUGE, metrics.REELICIT_RETURN,
                                             metrics.RELEARN_HELDOUT_ROUGE, metrics.Q8_HELDOUT_ROUGE,
                                             metrics.Q4_HELDOUT_ROUGE, metrics.RECALLED_FACTS["heldout"],
                                             metrics.STATED["heldout"]}
    assert metrics.summary({metrics.MODEL_UTILITY: 0.9, "eval_seconds": 3.0, metrics.PRIVLEAK: None}) == {
        metrics.MODEL_UTILITY: 0.9}


@pytest.mark.parametrize("path", READERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_readers_spell_no_metric_key(path):
    strings = {node.value for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not strings & set(metrics.METRICS), sorted(strings & set(metrics.METRICS))


def test_every_key_the_audit_writes_is_declared(params, tmp_path):
    model = build_tiny_model("llama", tmp_path / "m", chat=False)
    backend = Backend.load(model, "cpu", 8)
    cfg = params.model_copy(update={"audit": params.audit.model_copy(update={"relearn_steps": 1,
                                                                               "max_new_tokens": 4})})
    rows = [("Where was Ada born?", "Ada was born in Paris."), ("What did Ada write?", "Ada wrote poems.")]
    out = audit_model(backend, cfg, "Ada", None, rows, [rows], gold=rows)
    public = {k for k in out if not k.startswith("_")}
    assert public and public <= set(metrics.METRICS), public - set(metrics.METRICS)
    parts = {part: out[key] for part, key in metrics.AUDIT_PART_SECONDS.items() if key in out}
    assert set(parts) == {"recall", "relearn", "quantize"}  # no graph given: no re-elicitation
    assert all(value > 0 for value in parts.values())
    assert out[metrics.AUDIT_SECONDS] == pytest.approx(sum(parts.values()))
