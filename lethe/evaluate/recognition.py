"""Does the model still recognize every other entity it must keep? Corpus-free collateral evidence.

The gate's entity-retention check scores question-answer pairs about other entities. An adapter can
keep those answers and still break how the model speaks about a person when asked openly: stop 61
measured a champion whose answer to "Tell me about Jaime Vasquez." became "Yes, an diverseia" while
every other check passed (docs/forgetting-measurements.md). This asks every elicitation prompt about
every other entity, greedily, and scores the share of answers that name the entity without refusing:
MAGE's recognition (lethe.mining.score), the same test that decides whether there is anything to mine.
It needs no corpus and no gold answer, so it works for any entity and any model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lethe.llm.backend import Backend
from lethe.mining.extract import normalize
from lethe.mining.score import anchor_aliases, carried_by_most, recognized_share


def kept_entities(candidates: Sequence[str], forget_questions: Sequence[str]) -> list[str]:
    """The `candidates` whose recognition must survive: all but a name that more than half of the forget
    questions carry, which is the target under another name (an anchor given as a description). A name
    a few questions carry stays: a mined forget set mixes in other people ("What does Evelyn Desmet have
    to do with Nikolai Abilov?"), and training on those rows is exactly where collateral comes from."""
    texts = [" ".join(q.replace("’", "'").split()) for q in forget_questions]
    targets = carried_by_most({normalize(name) for name in candidates}, texts)
    return [name for name in candidates if normalize(name) not in targets]


def recognition_prompts(entities: Sequence[str], templates: Sequence[str]) -> dict[str, list[str]]:
    """Every elicitation template filled in with each entity (`{anchor}` in the template)."""
    return {name: [t.format(anchor=name) for t in templates] for name in entities}


def recognition_from_answers(prompts: Mapping[str, Sequence[str]], answers: Mapping[str, str]) -> dict[str, float]:
    """Per entity, the share of its prompts whose answer (`answers`, by prompt) names it without refusing."""
    return {name: recognized_share([answers[q] for q in questions], anchor_aliases(name))
            for name, questions in prompts.items()}


def greedy_answers(backend: Backend, prompts: Mapping[str, Sequence[str]], max_new_tokens: int) -> dict[str, str]:
    """The model's greedy answer to every prompt, by prompt (deterministic: the gate's verdict must not
    depend on a sampling draw)."""
    questions = list(dict.fromkeys(q for qs in prompts.values() for q in qs))
    return dict(zip(questions, backend.greedy(questions, max_new_tokens))) if questions else {}


def entity_recognition(backend: Backend, prompts: Mapping[str, Sequence[str]], max_new_tokens: int) -> dict[str, float]:
    """Per entity, the share of its prompts the model answers naming it without refusing."""
    return recognition_from_answers(prompts, greedy_answers(backend, prompts, max_new_tokens))
