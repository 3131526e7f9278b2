"""MAGE step 6: data-quality checks on the forget and neighbor sets with Great Expectations 1.x.

Each set is validated by a GX checkpoint over a pandas dataframe: schema, non-empty answers,
length bounds, (question, answer) uniqueness, minimum rows, target mentions (forget questions
must name the target; neighbor rows must not name it or its aliases), and coverage of the
graph's strong nodes. Results are kept as GX JSON and Data Docs HTML.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from pathlib import Path

import networkx as nx

from lethe.config import ValidateParams
from lethe.fileio import write_atomic
from lethe.mining.score import anchor_aliases
from lethe.supervision.synthesize import QASample, contains_key

COLUMNS = ["question", "answer", "kind", "source", "statement", "path", "edge", "node", "response_id"]


def _alias_regex(anchor: str) -> str:
    parts = sorted(anchor_aliases(anchor), key=len, reverse=True)
    return r"(?i)(?:^|[^\w])(?:" + "|".join(re.escape(p) for p in parts) + r")(?:[^\w]|$)"


def strong_node_coverage(graph: nx.DiGraph, forget: Sequence[QASample], min_strength: float,
                         exclude: Collection[str] = ()) -> list[dict]:
    """For each strong node: is it covered by at least one forget sample (as node or in the answer)?
    Nodes in `exclude` (other entities the model must keep: lethe.supervision.synthesize.other_entity_nodes)
    are not the target's memories and are not counted."""
    anchor = graph.graph["anchor"]
    rows = []
    for name, data in graph.nodes(data=True):
        if name == anchor or data["strength"] < min_strength or name in exclude:
            continue
        covered = any(s.node == name or contains_key(s.answer, data["key"]) for s in forget)
        rows.append({"node": name, "strength": data["strength"], "covered": 1.0 if covered else 0.0})
    return rows


def _frame(samples: Sequence[QASample]):
    import pandas as pd

    rows = [{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in s.to_dict().items()} for s in samples]
    return pd.DataFrame(rows, columns=COLUMNS)


def _suite_rows(kind: str, anchor: str, cfg: ValidateParams) -> list:
    import great_expectations.expectations as gxe

    alias = _alias_regex(anchor)
    common = [
        gxe.ExpectTableColumnsToMatchSet(column_set=COLUMNS, exact_match=True),
        gxe.ExpectColumnValuesToNotBeNull(column="question"),
        gxe.ExpectColumnValuesToNotBeNull(column="answer"),
        gxe.ExpectColumnValueLengthsToBeBetween(column="answer", min_value=cfg.min_answer_chars,
                                                max_value=cfg.max_answer_chars),
        gxe.ExpectColumnValueLengthsToBeBetween(column="question", min_value=3, max_value=cfg.max_question_chars),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["question", "answer"]),
        gxe.ExpectColumnValuesToBeInSet(column="kind", value_set=[kind]),
    ]
    if kind == "forget":
        return common + [
            gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_forget_rows),
            gxe.ExpectColumnValuesToMatchRegex(column="question", regex=alias, mostly=cfg.forget_mention_mostly),
        ]
    return common + [
        gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_neighbor_rows),
        gxe.ExpectColumnValuesToNotMatchRegex(column="question", regex=alias),
        gxe.ExpectColumnValuesToNotMatchRegex(column="answer", regex=alias),
    ]


def validate_sets(
    anchor: str,
    forget: Sequence[QASample],
    neighbor: Sequence[QASample],
    graph: nx.DiGraph | None,
    cfg: ValidateParams,
    out_dir: Path,
    held_out: Sequence[QASample] = (),
    other_nodes: Collection[str] = (),
) -> dict:
    """Run the GX checkpoint on both sets (+ strong-node coverage); write JSON and Data Docs.

    Coverage counts the held-out rows too (dev / audit): mining covered a strong memory even when
    the split keeps it out of training on purpose. It leaves out `other_nodes`, graph nodes that are
    other entities the model must keep (synthesis.json's `other_entity_nodes`).
    """
    import great_expectations.expectations as gxe
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    context = _gx_context(out_dir / "data_docs")
    source = context.data_sources.add_pandas("lethe")
    frames = {"forget_set": _frame(forget), "neighbor_set": _frame(neighbor)}
    suites = {"forget_set": _suite_rows("forget", anchor, cfg), "neighbor_set": _suite_rows("neighbor", anchor, cfg)}
    if graph is not None:
        frames["strong_node_coverage"] = pd.DataFrame(
            strong_node_coverage(graph, [*forget, *held_out], cfg.strong_node_strength, other_nodes),
            columns=["node", "strength", "covered"]
        )
        suites["strong_node_coverage"] = [
            gxe.ExpectColumnMeanToBeBetween(column="covered", min_value=cfg.min_strong_coverage, max_value=1.0)
        ]
    per_set = {name: _run_checkpoint(context, source, name, expectations, frames[name], out_dir)
               for name, expectations in suites.items()}
    all_ok = all(v["success"] for v in per_set.values())
    context.build_data_docs()
    report = {"success": all_ok, "sets": per_set, "data_docs": str((out_dir / "data_docs" / "index.html").resolve())}
    write_atomic(out_dir / "validation.json", json.dumps(report, indent=1))
    return report


def _gx_context(docs_dir: Path):
    """An ephemeral GX context, progress bars off, whose Data Docs site writes to `docs_dir`."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.update_data_docs_site(
        "local_site",
        {"class_name": "SiteBuilder", "show_how_to_buttons": False,
         "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
         "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}},
    )
    return context


def _run_checkpoint(context, source, name: str, expectations: list, frame, out_dir: Path) -> dict:
    """One set's suite as a GX checkpoint (results in <name>.gx.json and the Data Docs); its outcome."""
    import great_expectations as gx
    from great_expectations.core.result_format import ResultFormat

    batch_def = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(f"{name}_batch")
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_suite"))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=f"{name}_check", data=batch_def,
                                                                            suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(name=f"{name}_checkpoint", validation_definitions=[definition],
                      actions=[gx.checkpoint.UpdateDataDocsAction(name="docs")], result_format=ResultFormat.SUMMARY)
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    outcome = next(iter(result.run_results.values()))
    failed = [{"expectation": r.expectation_config.type, "column": r.expectation_config.kwargs.get("column"),
               "observed": r.result.get("observed_value", r.result.get("unexpected_percent"))}
              for r in outcome.results if not r.success]
    (out_dir / f"{name}.gx.json").write_text(json.dumps(result.describe_dict(), indent=1, default=str))
    return {"success": bool(outcome.success), "rows": int(len(frame)), "evaluated": len(outcome.results),
            "failed": failed}


def describe_failures(report: dict) -> str:
    """One readable line per failed expectation."""
    lines = []
    for name, outcome in report["sets"].items():
        for f in outcome["failed"]:
            lines.append(f"{name}: {f['expectation']} failed (observed {f['observed']})")
    return "; ".join(lines) or "all checks passed"
