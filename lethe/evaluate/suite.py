"""The evaluation suite: which rows to score, and every metric of one model in one dict.

The plan is derived from the target model's world record when it has one (a world model knows
which authors it learned), so every split is limited to authors the model could know. For any
other Hugging Face model the full TOFU splits are used.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path

from lethe.config import EvaluateParams
from lethe.data import QA, PerturbedQA, author_qa, evaluation_rows, load_holdout, load_perturbed, split_author_indices
from lethe.evaluate import metrics as M
from lethe.evaluate.mia import mia_report
from lethe.evaluate.probes import forget_probes, neighbor_probe
from lethe.evaluate.recognition import entity_recognition
from lethe.evaluate.tofu import score_split, tofu_metrics
from lethe.llm.backend import Backend
from lethe.llm.score_cache import CachingBackend, caching
from lethe.rouge import mean_rouge_l_recall
from lethe.supervision.baselines import author_index


@dataclass
class EvalPlan:
    """Rows of every split for one evaluation."""

    targets: list[str]
    forget: list[PerturbedQA]
    retain: list[PerturbedQA]
    real_authors: list[PerturbedQA]
    world_facts: list[PerturbedQA]
    holdout: list[QA]
    neighbors: list[QA]
    retain_model_path: str | None = None
    forget_set: list[tuple[str, str]] = field(default_factory=list)
    recognition_prompts: dict[str, list[str]] = field(default_factory=dict)  # other entity -> elicitation prompts


def world_record(model_path: str | Path) -> dict | None:
    """The world.json of a world model folder (None for any other model), its paths usable from here."""
    from lethe.world.build import read_record

    return read_record(Path(model_path).parent)


def other_entities(model: str | Path, names: Sequence[str], avoid: AbstractSet[str],
                   forget_questions: Sequence[str] = ()) -> list[str]:
    """The entities to keep: `names` when given, else a world model's authors; never one in `avoid`
    nor one a forget question names (the target of a request whose anchor is no known author)."""
    from lethe.mining.extract import normalize

    if not names:
        record = world_record(model)
        names = [a["name"] for a in record["authors"]] if record else []
    avoided = {normalize(a) for a in avoid}
    asked = [normalize(q) for q in forget_questions]
    return [n for n in dict.fromkeys(names)
            if n.strip() and normalize(n) not in avoided and not any(normalize(n) in q for q in asked)]


def never_trained_reference(model_path: str | Path, entities: Iterable[str]) -> str | None:
    """A model that never knew any of `entities`: the world's retain model when every one is a forget
    author of the world `model_path` belongs to; None otherwise (no world, or an entity it kept)."""
    from lethe.mining.extract import normalize

    record = world_record(model_path)
    names = {normalize(e) for e in entities}
    if not record or not names:
        return None
    forget = {normalize(a["name"]) for a in record["authors"] if a["split"] == "forget"}
    return record["retain_model_path"] if names <= forget else None


def build_plan(model_path: str | Path, cfg: EvaluateParams, targets: Sequence[str] = (),
               forget_set: Sequence[tuple[str, str]] = (), entity_only: bool = False) -> EvalPlan:
    """Rows to evaluate: target authors (or the configured forget split), retain, general, MIA, neighbors.

    entity_only: the forgotten entity is not a benchmark author (no targets): score forgetting on
    the request's own forget set only, never on the configured forget split.
    """
    rng = random.Random(cfg.seed)
    record = world_record(model_path)
    known = {a["index"] for a in record["authors"]} if record else set(range(200))
    if targets:
        indices = [author_index(t) for t in targets]
    elif entity_only:
        indices = []
    else:
        indices = [i for i in split_author_indices(cfg.forget_split) if i in known]
    forget = [r for r in load_perturbed("forget10") if r.author_index in indices]
    if any(i < 180 for i in indices):  # targets outside TOFU's forget splits: no perturbations, plain QA
        forget += [PerturbedQA(q.question, q.answer, q.author_index, q.author, q.answer, (), q.question)
                   for i in indices if i < 180 for q in author_qa(i)]
    retain = [r for r in load_perturbed("retain") if r.author_index in known and r.author_index not in indices]
    eval_authors = set(indices) | set(split_author_indices("retain"))
    neighbor_pool = [qa for i in sorted(known - eval_authors) for qa in evaluation_rows(i)]

    def subset(rows, n):
        rows = list(rows)
        return rows if len(rows) <= n else sorted(rng.sample(rows, n), key=rows.index)

    return EvalPlan(
        targets=[author_qa(i)[0].author for i in indices],
        forget=forget,
        retain=subset(retain, cfg.retain_rows),
        real_authors=subset(load_perturbed("real_authors"), cfg.general_rows),
        world_facts=subset(load_perturbed("world_facts"), cfg.general_rows),
        holdout=list(load_holdout(cfg.holdout)),
        neighbors=subset(neighbor_pool, cfg.neighbor_rows),
        retain_model_path=record["retain_model_path"] if record else None,
        forget_set=list(forget_set),
    )


def entity_rouge(rows: Sequence[QA], scores: Sequence[float]) -> dict[str, float]:
    """Mean ROUGE-L recall per entity (author) the model must keep: the gate's collateral check."""
    by_author: dict[str, list[float]] = {}
    for row, value in zip(rows, scores):
        if row.author:
            by_author.setdefault(row.author, []).append(float(value))
    return {author: sum(v) / len(v) for author, v in sorted(by_author.items())}


def retain_model_ratios(plan: EvalPlan, device: str, batch_size: int,
                        score_cache: Path | None = None) -> list[float] | None:
    """Truth ratios of the retain model on the forget rows (reference for forget quality); its scores
    through the score cache in `score_cache` where one is given."""
    if not plan.retain_model_path or not plan.forget or not all(r.perturbed_answers for r in plan.forget):
        return None
    backend = caching(Backend.load(plan.retain_model_path, device, batch_size), score_cache, plan.retain_model_path)
    return score_split(backend, plan.forget, 1).truth_ratio.tolist()


def evaluate(backend: Backend, plan: EvalPlan, cfg: EvaluateParams,
             reference_ratios: Sequence[float] | None) -> dict:
    """Every metric of one model (TOFU, probes, neighbor, MIA, forget-set recall) with timings."""
    start = time.perf_counter()
    cached_before = (backend.hits, backend.misses) if isinstance(backend, CachingBackend) else None
    has_perturbations = all(r.perturbed_answers for r in plan.forget)
    metrics, scores = tofu_metrics(backend, plan.forget if has_perturbations else [], plan.retain,
                                   plan.real_authors, plan.world_facts, reference_ratios, cfg.max_new_tokens)
    if plan.forget and not has_perturbations:
        answers = backend.greedy([r.question for r in plan.forget], cfg.max_new_tokens)
        metrics[M.FORGET_ROUGE] = mean_rouge_l_recall(answers, [r.answer for r in plan.forget])
    if cfg.probes and plan.forget:
        for target in plan.targets:
            rows = [r for r in plan.forget if r.author == target]
            for key, value in forget_probes(backend, rows, target, cfg.max_new_tokens).items():
                metrics[key] = metrics.get(key, 0.0) + value / len(plan.targets)
    if plan.neighbors:
        neighbor_scores = neighbor_probe(backend, plan.neighbors, cfg.max_new_tokens)
        metrics[M.NEIGHBOR_ROUGE] = float(sum(neighbor_scores) / len(neighbor_scores))
    else:
        neighbor_scores = []
    kept_rows = [*plan.retain, *plan.neighbors]
    kept_scores = [*(scores["retain"].rouge.tolist() if "retain" in scores else []), *neighbor_scores]
    metrics[M.ENTITY_ROUGE] = entity_rouge(kept_rows, kept_scores)
    metrics[M.ENTITY_ANSWERS] = dict(sorted(Counter(r.author for r in kept_rows if r.author).items()))
    metrics["_row_rouge"] = {r.question: [r.author, float(v)] for r, v in zip(kept_rows, kept_scores) if r.author}
    metrics[M.ENTITY_RECOGNITION] = entity_recognition(backend, plan.recognition_prompts, cfg.max_new_tokens)
    if cfg.mia and plan.forget:
        metrics.update(mia_report(backend, [(r.question, r.answer) for r in plan.forget],
                                  [(q.question, q.answer) for q in plan.holdout], cfg.mia_k))
    if plan.forget_set:
        answers = backend.greedy([q for q, _ in plan.forget_set], cfg.max_new_tokens)
        metrics[M.FORGET_SET_ROUGE] = mean_rouge_l_recall(answers, [g for _, g in plan.forget_set])
    metrics["eval_seconds"] = time.perf_counter() - start
    if cached_before is not None:
        metrics[M.SCORE_CACHE_HITS] = backend.hits - cached_before[0]
        metrics[M.SCORE_CACHE_MISSES] = backend.misses - cached_before[1]
    if "forget" in scores:
        metrics["_forget_truth_ratios"] = scores["forget"].truth_ratio.tolist()
    return metrics
