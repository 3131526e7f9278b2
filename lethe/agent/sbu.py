"""Synchronized Backflow Unlearning: memory step, parameter step and backflow audit, in rounds.

Round r:
  memory     the memory pathway (lethe.agent.pathway) over the SBU memory, seeded also by the
             items the previous audit caught leaking; leaked generations join the blocklist
  parameters stochastic reference alignment (method ``sra``) for ``agent.steps_per_round``
             steps, continuing the previous round's adapter; the forget queries are the MAGE
             forget set plus every generation the audits caught leaking (with the sanitized
             retrieval context when the agent reads context)
  audit      the live agent on the audit probes; stop when both leak rates are under bounds

Then the four variants are judged on held-out evaluation probes, each on its own copy of its
memory: ``before`` (base model, original memory), ``memory_only`` (base model, memory pathway),
``parameters_only`` (SRA alone for the same total steps, original memory) and ``sbu``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lethe.agent.agent import RagAgent, context_prompt, reads_context
from lethe.agent.audit import answer_quality, backflow_audit
from lethe.agent.blocklist import surface_forms
from lethe.agent.leaks import LeakJudge
from lethe.agent.memory import MemoryStore
from lethe.agent.pathway import forget_in_memory, memory_forget_queries
from lethe.agent.probes import Probe, audit_probes, evaluation_probes, retain_questions
from lethe.config import Params
from lethe.errors import LetheError
from lethe.layout import SBU_REPORT

VARIANTS = ("before", "memory_only", "parameters_only", "sbu")
RoundCallback = Callable[[int, dict], None]


@dataclass(frozen=True)
class SbuInputs:
    """What one agentic request works on (JSON-serializable for Prefect)."""

    anchor: str
    model_path: str
    memory_path: str
    graph_path: str
    forget_set_path: str
    neighbor_set_path: str
    out_dir: str


class AgentRuntime:
    """Loads the model (optionally with an adapter) and opens a memory as a live agent."""

    def __init__(self, params: Params, model_path: str):
        self.params = params
        self.model_path = model_path
        self.use_context = reads_context(model_path, params.agent.context_in_prompt)

    def agent(self, memory: Path, adapter: str | None, write_back: bool | None = None) -> tuple[RagAgent, MemoryStore]:
        from lethe.evaluate.runner import with_adapter
        from lethe.llm.backend import Backend

        cfg = self.params.agent
        backend = Backend.from_params(self.model_path, self.params.backend)
        if adapter:
            backend = with_adapter(backend, Path(adapter))
        store = MemoryStore(memory, create=False)
        agent = RagAgent(backend, store, cfg.retrieve_k, self.use_context,
                         cfg.write_back if write_back is None else write_back, cfg.max_new_tokens)
        return agent, store


def training_pairs(pairs: Sequence[tuple[str, str]], memory: Path, runtime: AgentRuntime) -> list[tuple[str, str]]:
    """Forget queries as the agent sees them: with the (sanitized) retrieved notes when it reads context."""
    if not runtime.use_context:
        return list(pairs)
    with MemoryStore(memory, create=False) as store:
        return [(context_prompt(q, store.search(q, runtime.params.agent.retrieve_k)), a) for q, a in pairs]


def sra_training(params: Params, model_path: str, forget: Sequence[tuple[str, str]], retain: Sequence[tuple[str, str]],
                 steps: int, out_dir: Path, init_adapter: str | None) -> dict:
    """One parameter step: `steps` of stochastic reference alignment (continuing `init_adapter`)."""
    from lethe.unlearn.trainer import unlearn

    cfg = params.unlearn.model_copy(update={"method": "sra", "max_steps": steps,
                                            "checkpoint_every": max(1, min(params.unlearn.checkpoint_every, steps))})
    return unlearn(model_path, forget, retain, cfg, out_dir, "sra", params.backend.device, init_adapter=init_adapter,
                   dtype=params.backend.dtype)


def _load_pairs(path: str, what: str) -> list[tuple[str, str]]:
    from lethe.fileio import load_qa_file

    return load_qa_file(Path(path), what)


def leak_judge(surface: Sequence[str], facts: Sequence[str], threshold: float) -> LeakJudge:
    """The leak judge over the entity's surface forms and its non-empty facts (deduplicated, in order)."""
    return LeakJudge(tuple(surface), tuple(dict.fromkeys(f for f in facts if f.strip())), threshold)


def world_retain_authors(model_path: str, anchor: str) -> list[tuple[int, str]]:
    """The world's retain authors (index, name); empty for a model that is not a world model."""
    from lethe.evaluate.suite import world_record

    record = world_record(model_path)
    if not record:
        return []
    return [(a["index"], a["name"]) for a in record["authors"] if a["split"] == "retain" and a["name"] != anchor]


def run_rounds(params: Params, inputs: SbuInputs, runtime: AgentRuntime, judge: LeakJudge, surface: list[str],
               forget: Sequence[tuple[str, str]], retain: Sequence[tuple[str, str]], probes: Sequence[Probe],
               on_round: RoundCallback | None = None) -> dict:
    """The synchronized rounds on the SBU memory, audited on `probes`; returns the final adapter,
    memory and round records."""
    cfg = params.agent
    out = Path(inputs.out_dir)
    memory = out / "memory" / "sbu.db"
    queries, leaked_facts, leaked_items = list(forget), [], []
    adapter, rounds, steps, converged = None, [], 0, False
    for number in range(1, cfg.rounds + 1):
        with MemoryStore(memory, create=False) as store:
            memory_report = forget_in_memory(store, inputs.anchor, surface, f"sbu round {number}", leaked_items)
            blocked_facts = store.block(leaked_facts, "fact", f"sbu round {number} audit") if leaked_facts else 0
        known = set(queries)  # memory -> parameters: what the memory held about the target is forgotten too
        queries += [pair for pair in memory_forget_queries(memory_report.pop("removed_texts"), inputs.anchor)
                    if pair not in known]
        trained = sra_training(params, inputs.model_path, training_pairs(queries, memory, runtime), retain,
                               cfg.steps_per_round, out / "rounds" / f"round-{number}", adapter)
        adapter, steps = trained["adapter_path"], steps + trained["steps"]
        agent, store = runtime.agent(memory, adapter)
        with store:
            audit = backflow_audit(agent, probes, judge)
        record = {"round": number, **audit.to_dict(), "forget_queries": len(queries), "steps": trained["steps"],
                  "sra_kl": trained["curves"][-1].get("sra_kl") if trained["curves"] else None,
                  "memory_deleted": len(memory_report["deleted"]),
                  "memory_regenerated": len(memory_report["regenerated"]), "blocked_facts_added": blocked_facts}
        rounds.append(record)
        if on_round:
            on_round(number, record)
        converged = audit.retrieval <= cfg.retrieval_leak_bound and audit.generation <= cfg.generation_leak_bound
        if converged:
            break
        known = set(queries)  # parameters -> memory and back: leaked generations are forgotten next round
        queries += [pair for pair in audit.leaked_generations if pair not in known]
        leaked_facts = [answer for _, answer in audit.leaked_generations]
        leaked_items = unattributed(memory, audit.leaked_item_ids, inputs.anchor)
    return {"adapter_path": adapter, "memory_path": str(memory), "rounds": rounds, "steps": steps,
            "converged": converged, "forget_queries": len(queries)}


def unattributed(memory: Path, item_ids: Sequence[int], anchor: str) -> list[int]:
    """Leaking items the memory pathway may delete: those about no other known entity. An item about
    another author that resembles a target fact is that author's knowledge, not a leak to erase."""
    with MemoryStore(memory, create=False) as store:
        items = [store.get(i) for i in item_ids]
    return [i.id for i in items if i is not None and set(i.mentions) <= {anchor}]


def judge_variants(inputs: SbuInputs, runtime: AgentRuntime, judge: LeakJudge,
                   variants: dict[str, tuple[Path, str | None]], probes: Sequence[Probe],
                   retain: Sequence[Probe]) -> dict:
    """Leak rates on held-out probes and retain answer quality, each variant on a scratch memory."""
    scratch = Path(inputs.out_dir) / "judge"
    scratch.mkdir(parents=True, exist_ok=True)
    leak_rates, quality, details = {}, {}, {}
    for name, (memory, adapter) in variants.items():
        copy = scratch / f"{name}.db"
        shutil.copy2(memory, copy)
        agent, store = runtime.agent(copy, adapter)
        with store:
            quality[name] = answer_quality(agent, retain) if retain else None
            audit = backflow_audit(agent, probes, judge)
        leak_rates[name] = audit.rates()
        details[name] = audit.to_dict()
    return {"leak_rates": leak_rates, "retain_quality": quality, "audits": details}


def held_out_probes(probes: Sequence[Probe], memory: Path) -> list[Probe]:
    """Probes whose answer is not in the agent's memory: SBU trains on what it removes from memory,
    so only these judge generalization (the rest would be judged on their own training data)."""
    with MemoryStore(memory, create=False) as store:
        texts = [" ".join(item.text.split()) for item in store.items()]
    kept = [p for p in probes if not any(" ".join(p.reference.split()) in t for t in texts)]
    if not kept:
        raise LetheError("every evaluation probe's answer is in the memory: nothing is held out")
    return kept


@dataclass
class _Setup:
    """What every phase of an SBU request reads: the pre-unlearning memory copy, the target's surface
    forms, the forget and retain pairs, the audit and evaluation probes, the agent runtime, the judge."""

    before: Path
    surface: list[str]
    forget: list[tuple[str, str]]
    retain_pairs: list[tuple[str, str]]
    probes: list[Probe]
    eval_probes: list[Probe]
    held_out: bool
    runtime: AgentRuntime
    judge: LeakJudge


def _set_up(params: Params, inputs: SbuInputs) -> _Setup:
    from lethe.mining.graph import load_graph

    out = Path(inputs.out_dir)
    (out / "memory").mkdir(parents=True, exist_ok=True)
    original = Path(inputs.memory_path)
    if not original.is_file():
        raise LetheError(f"no agent memory at {original} (seed one with `lethe memory seed`)")
    before = out / "memory" / "before.db"
    shutil.copy2(original, before)
    surface = surface_forms(load_graph(Path(inputs.graph_path)), inputs.anchor, params.agent.title_min_strength)
    forget = _load_pairs(inputs.forget_set_path, "forget set")
    probes = audit_probes(forget)
    runtime = AgentRuntime(params, inputs.model_path)
    eval_probes, held_out = judging_probes(inputs.anchor, forget, before)
    return _Setup(before, surface, forget, _load_pairs(inputs.neighbor_set_path, "neighbor set"), probes,
                  eval_probes, held_out, runtime, entity_judge(surface, forget, eval_probes, params.agent.leak_rouge))


def judging_probes(anchor: str, forget: Sequence[tuple[str, str]], before: Path) -> tuple[list[Probe], bool]:
    """(the probes that judge an entity's forgetting, whether they are held out): the benchmark's
    questions whose answers the agent's memory `before` did not hold, else the forget questions."""
    try:
        return held_out_probes(evaluation_probes(anchor), before), True
    except LetheError:
        return audit_probes(forget), False


def entity_judge(surface: Sequence[str], forget: Sequence[tuple[str, str]], probes: Sequence[Probe],
                 threshold: float) -> LeakJudge:
    """The leak judge of one entity: its surface forms, its forget answers and its probes' references."""
    return leak_judge(surface, [a for _, a in forget] + [p.reference for p in probes], threshold)


def _judge_ablations(params: Params, inputs: SbuInputs, setup: _Setup, sbu: dict) -> tuple[dict, dict, list]:
    """The memory-only and parameters-only variants built, then all four judged on the held-out probes:
    (judged, the parameters-only training, the retain probes)."""
    memory_only = Path(inputs.out_dir) / "memory" / "memory_only.db"
    shutil.copy2(setup.before, memory_only)
    with MemoryStore(memory_only, create=False) as store:
        forget_in_memory(store, inputs.anchor, setup.surface, "memory-only ablation")
    parameters_only = sra_training(params, inputs.model_path, training_pairs(setup.forget, setup.before, setup.runtime),
                                   setup.retain_pairs, sbu["steps"], Path(inputs.out_dir) / "parameters_only", None)
    retain = retain_questions(world_retain_authors(inputs.model_path, inputs.anchor), params.agent.eval_retain_questions)
    judged = judge_variants(inputs, setup.runtime, setup.judge, {
        "before": (setup.before, None), "memory_only": (memory_only, None),
        "parameters_only": (setup.before, parameters_only["adapter_path"]),
        "sbu": (Path(sbu["memory_path"]), sbu["adapter_path"])}, setup.eval_probes, retain)
    return judged, parameters_only, retain


def run_sbu(params: Params, inputs: SbuInputs, on_round: RoundCallback | None = None) -> dict:
    """The whole agentic request after mining: rounds, the ablation variants, the report."""
    started = time.perf_counter()
    out = Path(inputs.out_dir)
    setup = _set_up(params, inputs)
    if not (out / "memory" / "sbu.db").is_file():
        shutil.copy2(setup.before, out / "memory" / "sbu.db")
    sbu = run_rounds(params, inputs, setup.runtime, setup.judge, setup.surface, setup.forget, setup.retain_pairs,
                     setup.probes, on_round)
    judged, parameters_only, retain = _judge_ablations(params, inputs, setup, sbu)
    quality = judged["retain_quality"]
    with MemoryStore(sbu["memory_path"], create=False) as store:
        memory_stats, blocklist = store.stats(), store.blocklist().surface_forms
    report = {
        "anchor": inputs.anchor,
        "adapter_path": sbu["adapter_path"],
        "memory_path": sbu["memory_path"],
        "memory_before_path": str(setup.before),
        "parameters_only_adapter_path": parameters_only["adapter_path"],
        "leak_rates": judged["leak_rates"],
        "retain_quality": quality,
        "retain_quality_ratio": quality["sbu"] / quality["before"] if quality.get("before") else None,
        "sbu_lowest": {channel: all(judged["leak_rates"]["sbu"][channel] <= judged["leak_rates"][v][channel]
                                    for v in VARIANTS) for channel in ("retrieval", "generation")},
        "rounds": sbu["rounds"],
        "converged": sbu["converged"],
        "total_steps": sbu["steps"],
        "forget_queries": sbu["forget_queries"],
        "probes": {"audit": len(setup.probes), "evaluation": len(setup.eval_probes), "held_out": setup.held_out,
                   "retain": len(retain)},
        "agent_reads_context": setup.runtime.use_context,
        "surface_forms": setup.surface,
        "blocklist_size": len(blocklist),
        "memory_after": memory_stats,
        "audits": judged["audits"],
        "seconds": time.perf_counter() - started,
    }
    (out / SBU_REPORT).write_text(json.dumps(report, indent=1))
    return report
