"""A small retrieval-augmented agent over the target model: retrieve, answer, write a note back.

Every answer is written back to memory as a note derived from the items it retrieved, through
the memory's blocklist. That write-back is how an agent's parameters leak into its memory
("backflow"), and the blocklist is what stops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lethe.agent.memory import Item, MemoryStore, MemoryWriteBlocked
from lethe.agent.summarize import GENERATOR
from lethe.llm.backend import Backend


@dataclass
class AgentTurn:
    """One question answered: what was retrieved, what was said, what was written."""

    question: str
    hits: list[Item]
    answer: str
    note_id: int | None = None
    blocked: str | None = None

    def to_dict(self) -> dict:
        return {"question": self.question, "hits": [h.to_dict() for h in self.hits], "answer": self.answer,
                "note_id": self.note_id, "blocked": self.blocked}


def reads_context(model_path: str | Path, setting: str) -> bool:
    """Whether the agent puts retrieved notes in the prompt (`auto`: not for the QA-only world model)."""
    from lethe.evaluate.suite import world_record

    if setting != "auto":
        return setting == "always"
    return world_record(model_path) is None


def context_prompt(question: str, hits: Sequence[Item]) -> str:
    """The user turn with the retrieved notes in front of the question."""
    if not hits:
        return question
    notes = "\n".join(f"- {h.text}" for h in hits)
    return f"Notes from memory:\n{notes}\n\nUsing the notes if they help, answer: {question}"


class RagAgent:
    """Retrieval-augmented answering over one model and one memory."""

    def __init__(self, backend: Backend, store: MemoryStore, k: int, use_context: bool, write_back: bool,
                 max_new_tokens: int = 64):
        self.backend = backend
        self.store = store
        self.k = k
        self.use_context = use_context
        self.write_back = write_back
        self.max_new_tokens = max_new_tokens

    def prompts(self, questions: Sequence[str], hits: Sequence[Sequence[Item]]) -> list[str]:
        """What the model is asked for each question (with or without the retrieved notes)."""
        if not self.use_context:
            return list(questions)
        return [context_prompt(q, h) for q, h in zip(questions, hits)]

    def ask(self, questions: Sequence[str], write_back: bool | None = None) -> list[AgentTurn]:
        """Answer a batch: retrieve for each, generate (batched, greedy), then write notes in order
        (unless `write_back`, default the agent's setting, is off)."""
        hits = [self.store.search(q, self.k) for q in questions]
        answers = self.backend.greedy(self.prompts(questions, hits), self.max_new_tokens)
        turns = [AgentTurn(q, h, a) for q, h, a in zip(questions, hits, answers)]
        if write_back is None:
            write_back = self.write_back
        if write_back:
            for turn in turns:
                self.remember(turn)
            self.store.commit()
        return turns

    def remember(self, turn: AgentTurn) -> None:
        """Write the exchange back as a note derived from what was retrieved (unless blocked)."""
        if not turn.answer.strip():
            return
        try:
            turn.note_id = self.store.add("note", f"{turn.question} {turn.answer}",
                                          derived_from=[h.id for h in turn.hits], generator=GENERATOR)
        except MemoryWriteBlocked as blocked:
            turn.blocked = str(blocked)
