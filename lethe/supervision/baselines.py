"""Forget-set baselines on the same model, selectable wherever a forget set is expected.

- ``gold``: the benchmark's own QA of the author (TOFU full.jsonl rows of that author).
- ``directqa``: the model is asked directly about the entity and keeps its self-consistent
  answers. Instruction models write the QA pairs themselves (parsed); models that cannot follow
  instructions are asked fixed, entity-agnostic facet questions. An answer is kept when the
  greedy answer agrees with the model's own samples (mean ROUGE-L recall >= `min_agreement`).
"""

from __future__ import annotations

import re

from lethe.data import author_qa, load_authors
from lethe.errors import LetheError
from lethe.llm.backend import Backend
from lethe.mining.extract import normalize
from lethe.rouge import rouge_l_recall
from lethe.supervision.synthesize import QASample, dedupe, follows_instructions

DIRECTQA_QUESTIONS = (
    "Who is {anchor}?",
    "Where is {anchor} from?",
    "When was {anchor} born?",
    "What does {anchor} do for a living?",
    "What are the professions of the parents of {anchor}?",
    "What kind of work is {anchor} famous for?",
    "Which works by {anchor} are the best known?",
    "Has {anchor} won any prizes?",
    "What influenced {anchor}?",
    "What is special about the style of {anchor}?",
)
WRITE_QA_PROMPT = (
    "Write 10 different question-answer pairs about {anchor}, covering facts you know.\n"
    "Format each exactly as:\nQuestion: <question>\nAnswer: <answer>"
)
_PAIR_RE = re.compile(r"Question:\s*(?P<q>.+?)\s*Answer:\s*(?P<a>.+?)(?=\n\s*Question:|\Z)", re.S)


def author_index(anchor: str) -> int:
    """TOFU author index of an anchor name (case and spacing folded)."""
    wanted = normalize(anchor)
    for index, name in enumerate(load_authors()):
        if name and normalize(name) == wanted:
            return index
    raise LetheError(f"{anchor!r} is not a TOFU author: the gold baseline needs one")


def gold_forget_set(anchor: str) -> list[QASample]:
    """The author's benchmark QA as a forget set."""
    return [QASample(qa.question, qa.answer, "forget", "gold") for qa in author_qa(author_index(anchor))]


def directqa_forget_set(backend: Backend, anchor: str, samples: int = 5, min_agreement: float = 0.5,
                        seed: int = 0, max_new_tokens: int = 96) -> list[QASample]:
    """Self-verified QA written (or answered) by the model about the anchor."""
    if follows_instructions(backend):
        reply = backend.greedy([WRITE_QA_PROMPT.format(anchor=anchor)], max_new_tokens=768)[0]
        questions = [m["q"].strip() for m in _PAIR_RE.finditer(reply)]
    else:
        questions = [q.format(anchor=anchor) for q in DIRECTQA_QUESTIONS]
    if not questions:
        return []
    greedy = backend.greedy(questions, max_new_tokens)
    sampled = backend.sample(questions, samples, temperature=1.0, seed=seed, max_new_tokens=max_new_tokens)
    kept = []
    for question, answer, others in zip(questions, greedy, sampled):
        agreement = sum(rouge_l_recall(o, answer) for o in others) / len(others)
        if answer and agreement >= min_agreement:
            kept.append(QASample(question, answer, "forget", "directqa", statement=f"agreement={agreement:.2f}"))
    return dedupe(kept)
