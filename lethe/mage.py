"""MAGE as resumable steps over a request work directory.

Each step reads the previous steps' files and writes its own (declared in lethe.layout.STEP_IO, the
file names in lethe.layout.MineLayout), so a crashed request resumes at the first step whose outputs
are missing, and DVC / Prefect can run the steps one by one:

    elicit      -> responses_hop0.jsonl
    score       -> graph_seed.json
    expand      -> graph.json, responses.jsonl, graph.png, mining_stats.json
    sample      -> paths.jsonl
    synthesize  -> forget_set.jsonl (training part), dev_set.jsonl, audit_set.jsonl (held out by
                   graph node, lethe.supervision.heldout), neighbor_set.jsonl, synthesis.json
    validate    -> validation/validation.json (+ GX results and Data Docs)

The forget-set `source` may be ``mage`` (the graph), ``gold`` or ``directqa`` (baselines); the
neighbor set always comes from the graph.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from lethe.config import Params
from lethe.errors import LetheError
from lethe.fileio import read_jsonl, write_atomic
from lethe.layout import STEP_IO, STEPS, MineLayout
from lethe.llm.backend import Backend

SOURCES = ("mage", "gold", "directqa")
MAX_ANCHOR_CHARS = 200


@dataclass(frozen=True)
class Request:
    """What a mining request is about; stored as request.json in the work directory."""

    anchor: str
    model_path: str
    source: str = "mage"
    description: str | None = None


def check_anchor(anchor: str, description: str | None = None) -> tuple[str, str | None]:
    """Clean the anchor (data only, never instructions); reject empty or absurd ones clearly."""
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in anchor or ""):
        raise LetheError("the anchor contains control characters: give the plain name of the entity to forget")
    cleaned = " ".join((anchor or "").split())
    if not cleaned:
        raise LetheError("the anchor is empty: give the name of the entity to forget")
    if "/" in cleaned or "\\" in cleaned:
        raise LetheError(f"the anchor {anchor!r} looks like a path, not a name: give the name of the entity to forget")
    if not re.search(r"\w", cleaned) or not re.search(r"[^\W\d_]", cleaned):
        raise LetheError(f"the anchor {anchor!r} has no letters: give the name of the entity to forget")
    if len(cleaned) > MAX_ANCHOR_CHARS:
        raise LetheError(f"the anchor is {len(cleaned)} characters long; a name is at most {MAX_ANCHOR_CHARS}")
    desc = " ".join(description.split()) if description else None
    if desc and len(desc) > 2 * MAX_ANCHOR_CHARS:
        raise LetheError(f"the description is longer than one sentence ({len(desc)} characters)")
    return cleaned, desc


def request_slug(anchor: str) -> str:
    """A filesystem-safe, stable folder name for an anchor."""
    base = re.sub(r"[^a-z0-9]+", "-", anchor.lower()).strip("-")[:48] or "anchor"
    return f"{base}-{hashlib.sha256(anchor.encode()).hexdigest()[:8]}"


def _jsonl(path: Path, rows: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def load_samples(path: Path):
    """QASample rows of a forget/neighbor JSONL file."""
    from lethe.supervision.synthesize import QASample

    return [QASample(**row) for row in read_jsonl(path)]


class MagePipeline:
    """Runs the MAGE steps for one request in `workdir`, loading the model only when needed."""

    def __init__(self, request: Request, workdir: Path, params: Params, backend: Backend | None = None):
        """`backend`: the request's model, already loaded (a Dask worker keeps one across requests);
        else it is loaded from `request.model_path` by the first step that needs it."""
        self.request = request
        self.workdir = workdir
        self.files = MineLayout(workdir)
        self.params = params
        self._backend = backend
        workdir.mkdir(parents=True, exist_ok=True)
        stored = self.files.request
        if stored.is_file() and json.loads(stored.read_text()) != asdict(request):
            raise LetheError(f"{workdir} holds a different request; use another work directory")
        stored.write_text(json.dumps(asdict(request), indent=1))

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            cfg = self.params.backend
            self._backend = Backend.from_params(self.request.model_path, cfg)
        return self._backend

    def done(self, step: str) -> bool:
        return getattr(self.files, STEP_IO[step].done).is_file()

    # -- steps -----------------------------------------------------------------------------
    def elicit(self) -> None:
        from lethe.mining.graph import elicit_anchor, save_responses

        responses = elicit_anchor(self.backend, self.request.anchor, self.params.elicit, self.request.description)
        save_responses(responses, self.files.responses_hop0)

    def score(self) -> None:
        from lethe.mining.graph import load_responses, save_graph, seed_graph

        responses = load_responses(self.files.responses_hop0)
        save_graph(seed_graph(self.request.anchor, responses, self.params.score), self.files.graph_seed)

    def expand(self) -> None:
        from lethe.mining.graph import draw_graph, expand_graph, load_graph, load_responses, save_graph, save_responses

        graph = load_graph(self.files.graph_seed)
        responses = load_responses(self.files.responses_hop0)
        stats = expand_graph(self.backend, graph, responses, self.params.elicit, self.params.score,
                             self.params.expand) if len(graph) > 1 else None
        save_responses(responses, self.files.responses)
        self.files.mining_stats.write_text(json.dumps(
            {**(asdict(stats) if stats else {"model_calls": len(responses), "stopped_by": "nothing_memorized"}),
             "nodes": len(graph) - 1, "edges": graph.number_of_edges()}, indent=1))
        draw_graph(graph, self.files.graph_png)
        save_graph(graph, self.files.graph)

    def sample(self) -> None:
        from lethe.mining.graph import load_graph
        from lethe.supervision.walks import random_walks

        paths = random_walks(load_graph(self.files.graph), self.params.sample)
        _jsonl(self.files.paths, [{"nodes": list(p.nodes), "quality": p.quality} for p in paths])

    def synthesize(self) -> None:
        from lethe.mining.graph import load_graph, load_responses
        from lethe.supervision import baselines
        from lethe.supervision.synthesize import other_entity_nodes, synthesize_forget, synthesize_neighbors
        from lethe.supervision.walks import Path as WalkPath

        graph = load_graph(self.files.graph)
        cfg = self.params.synthesize
        source, mode = self.request.source, "n/a"
        if source == "mage":
            paths = [WalkPath(tuple(r["nodes"]), r["quality"]) for r in read_jsonl(self.files.paths)]
            forget, mode = synthesize_forget(self.backend, graph, paths,
                                             load_responses(self.files.responses), cfg)
        elif source == "gold":
            forget = baselines.gold_forget_set(self.request.anchor)
        else:
            forget = baselines.directqa_forget_set(self.backend, self.request.anchor, seed=cfg.seed,
                                                   max_new_tokens=self.params.elicit.max_new_tokens)
        others = self._other_entities()
        if source == "mage" and cfg.greedy_rows:
            forget = self._with_greedy_rows(forget, graph, others)
        mined, unconfident = len(forget), 0
        if source == "mage" and cfg.sampled_min_confidence > 0:
            from lethe.supervision.greedy import confident_sampled_rows

            forget, unconfident = confident_sampled_rows(self.backend, forget, cfg.sampled_min_confidence)
        forget, about_others = self._own_memories(forget, others)
        from lethe.supervision.heldout import split_forget_set

        audit = self.params.audit
        split = split_forget_set(forget, self.request.anchor, {n: d.get("key", n) for n, d in graph.nodes(data=True)},
                                 audit.heldout_share, audit.dev_share, audit.seed,
                                 min_audit=self.params.gate.min_heldout_probes)
        neighbor = synthesize_neighbors(self.backend, graph, cfg)
        _jsonl(self.files.neighbor_set, [s.to_dict() for s in neighbor])
        _jsonl(self.files.dev_set, [s.to_dict() for s in split.dev])
        _jsonl(self.files.audit_set, [s.to_dict() for s in split.audit])
        write_atomic(self.files.synthesis, json.dumps(
            {"source": source, "mode": mode, "forget_rows": len(split.train), "mined_rows": mined,
             "neighbor_rows": len(neighbor), "heldout": split.record(),
             "about_others_dropped": len(about_others), "unconfident_sampled_dropped": unconfident,
             "other_entity_nodes": other_entity_nodes(graph, others)}, indent=1))
        _jsonl(self.files.forget_set, [s.to_dict() for s in split.train])

    def _other_entities(self) -> list[str]:
        """The entities the model must keep besides the target: a world model's authors or
        unlearn.entity_retain_names, as unlearning keeps them."""
        from lethe.evaluate.suite import other_entities

        return other_entities(self.request.model_path, self.params.unlearn.entity_retain_names, {self.request.anchor})

    def _with_greedy_rows(self, forget: list, graph, others: list[str]) -> list:
        """`forget` after the rows of the model's greedy answers to every elicitation question
        (lethe.supervision.greedy); a sampled row that repeats one is dropped."""
        from lethe.mining.graph import load_responses
        from lethe.supervision.greedy import distinct_questions, greedy_rows
        from lethe.supervision.synthesize import dedupe, other_entity_nodes

        questions = distinct_questions(load_responses(self.files.responses))
        rows = greedy_rows(self.backend, graph, questions, self.params.elicit.max_new_tokens,
                           other_entity_nodes(graph, others), self.params.synthesize.greedy_min_confidence)
        return dedupe([*rows, *forget])

    def _own_memories(self, forget: list, others: list[str]) -> tuple[list, list]:
        """(kept, dropped) forget rows: with synthesize.drop_about_others, those that name one of `others`
        and not the target are dropped (lethe.supervision.synthesize.about_others)."""
        if not self.params.synthesize.drop_about_others:
            return forget, []
        from lethe.supervision.synthesize import about_others

        return about_others(forget, self.request.anchor, others)

    def validate(self) -> None:
        from lethe.mining.graph import load_graph
        from lethe.supervision.validate import validate_sets

        files = self.files
        graph = load_graph(files.graph) if self.request.source == "mage" else None
        held_out = [*load_samples(files.dev_set), *load_samples(files.audit_set)]
        synthesis = json.loads(files.synthesis.read_text()) if files.synthesis.is_file() else {}
        validate_sets(self.request.anchor, load_samples(files.forget_set), load_samples(files.neighbor_set), graph,
                      self.params.validate_, files.validation_dir, held_out, synthesis.get("other_entity_nodes", ()))

    # -- orchestration ---------------------------------------------------------------------
    def run_step(self, step: str, force: bool = False) -> float:
        """Run one step unless its output exists (resumable); return seconds spent."""
        if step not in STEPS:
            raise LetheError(f"unknown step {step!r}; steps are {', '.join(STEPS)}")
        if self.done(step) and not force:
            return 0.0
        start = time.perf_counter()
        getattr(self, step)()
        return time.perf_counter() - start

    def nothing_memorized(self) -> bool:
        from lethe.mining.graph import load_graph

        seed = self.files.graph_seed
        return seed.is_file() and len(load_graph(seed)) <= 1

    def run(self, until: str = "validate", on_step: Callable[[str], None] | None = None) -> dict:
        """Run steps in order up to `until`; stop early with a clear outcome if nothing is memorized."""
        timings = {}
        for step in STEPS[: STEPS.index(until) + 1]:
            if on_step:
                on_step(step)
            timings[step] = self.run_step(step)
            if step == "score" and self.nothing_memorized():
                return self.summary(timings, status="nothing_memorized")
        return self.summary(timings)

    def summary(self, timings: dict | None = None, status: str | None = None) -> dict:
        """The request's outcome: paths of every product, validation result, costs."""
        files = self.files
        validation = json.loads(files.validation.read_text()) if self.done("validate") else None
        if status is None:
            status = "validated" if validation and validation["success"] else (
                "validation_failed" if validation else "incomplete")
        stats = json.loads(files.mining_stats.read_text()) if files.mining_stats.is_file() else {}
        synthesized = self.done("synthesize")
        return {
            "status": status,
            "anchor": self.request.anchor,
            "source": self.request.source,
            "model_path": self.request.model_path,
            "workdir": str(self.workdir),
            "graph_path": str(files.graph) if self.done("expand") else None,
            "graph_png": str(files.graph_png) if files.graph_png.is_file() else None,
            "forget_set_path": str(files.forget_set) if synthesized else None,
            "neighbor_set_path": str(files.neighbor_set) if synthesized else None,
            "audit_set_path": str(files.audit_set) if synthesized else None,
            "validation": validation,
            "model_calls": stats.get("model_calls"),
            "graph_nodes": stats.get("nodes"),
            "seconds": timings or {},
        }
