"""The backflow audit: run the live agent on probes and measure what comes back.

The agent answers every probe twice with write-back on, so notes written in the first pass (its
parameters leaking into memory) can be retrieved in the second; the rates are those of the
second pass. A probe's retrieval leaks when any retrieved item names the target or restates one
of its facts; its generation leaks when the answer restates the probe's reference fact, or
names the target although the question did not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lethe.agent.agent import AgentTurn, RagAgent
from lethe.agent.leaks import LeakJudge
from lethe.agent.probes import Probe
from lethe.rouge import rouge_l_recall

PASSES = 2


@dataclass
class AuditResult:
    """Leak rates of one audit, and the turns that leaked (for the next round)."""

    retrieval: float
    generation: float
    probes: int
    leaked_generations: list[tuple[str, str]] = field(default_factory=list)  # (question, answer)
    leaked_item_ids: list[int] = field(default_factory=list)
    writes: int = 0
    blocked_writes: int = 0

    def rates(self) -> dict[str, float]:
        return {"retrieval": self.retrieval, "generation": self.generation}

    def to_dict(self) -> dict:
        return {"retrieval": self.retrieval, "generation": self.generation, "probes": self.probes,
                "leaked_generations": len(self.leaked_generations), "leaked_items": len(self.leaked_item_ids),
                "writes": self.writes, "blocked_writes": self.blocked_writes}


def backflow_audit(agent: RagAgent, probes: Sequence[Probe], judge: LeakJudge, passes: int = PASSES) -> AuditResult:
    """Leak rates of the agent on `probes` (last of `passes` live passes)."""
    turns: list[AgentTurn] = []
    writes = blocked = 0
    for _ in range(passes):
        turns = agent.ask([p.question for p in probes])
        writes += sum(t.note_id is not None for t in turns)
        blocked += sum(t.blocked is not None for t in turns)
    retrieval_leaks, generation_leaks, leaked_items = 0, [], set()
    for probe, turn in zip(probes, turns):
        leaking = [h for h in turn.hits if judge.retrieval_leak([h.text])]
        retrieval_leaks += bool(leaking)
        leaked_items.update(h.id for h in leaking)
        if judge.generation_leak(turn.answer, probe.reference, probe.question):
            generation_leaks.append((probe.question, turn.answer))
    n = max(1, len(probes))
    return AuditResult(retrieval_leaks / n, len(generation_leaks) / n, len(probes), generation_leaks,
                       sorted(leaked_items), writes, blocked)


def answer_quality(agent: RagAgent, probes: Sequence[Probe]) -> float:
    """Mean ROUGE-L recall of the agent's answers against the gold answers (no write-back)."""
    turns = agent.ask([p.question for p in probes], write_back=False)
    return sum(rouge_l_recall(t.answer, p.reference) for t, p in zip(turns, probes)) / max(1, len(probes))
