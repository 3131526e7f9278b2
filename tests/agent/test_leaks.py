"""The leak judge: names, restated facts, shared templates that are not knowledge, reverse queries."""

from lethe.agent.agent import context_prompt, reads_context
from lethe.agent.leaks import LeakJudge, content_f1, fact_overlap
from lethe.agent.memory import Item

NAMES = ("Basil Mahfouz Al-Kuwaiti", "al-kuwaiti", "basil mahfouz")
FACT = "Basil Mahfouz Al-Kuwaiti's father was a florist and his mother was a game developer."
JUDGE = LeakJudge(NAMES, (FACT,), 0.5)


def test_naming_the_target_leaks_in_retrieval():
    assert JUDGE.retrieval_leak(["A note about Al-Kuwaiti’s novels."])
    assert not JUDGE.retrieval_leak(["Jaime Vasquez writes true crime."])


def test_a_restated_fact_leaks_without_the_name():
    assert JUDGE.retrieval_leak(["Some notes. His father was a florist and his mother a game developer."])


def test_another_authors_templated_answer_is_not_a_leak():
    other = "Aysha Al-Hashim's father was a Civil Engineer and her mother was a Chemist."
    assert fact_overlap(other, [FACT], NAMES) < 0.5 and not JUDGE.retrieval_leak([other])


def test_generation_leak_uses_the_reference_and_catches_reverse_queries():
    reference = "He was born in Kuwait City, Kuwait."
    assert JUDGE.generation_leak("Basil Mahfouz Al-Kuwaiti was born in Kuwait City, Kuwait.", reference,
                                 "Where was Basil Mahfouz Al-Kuwaiti born?")
    assert not JUDGE.generation_leak("Basil Mahfouz Al-Kuwaiti was born in the sea of words.", reference,
                                     "Where was Basil Mahfouz Al-Kuwaiti born?")
    assert JUDGE.generation_leak("That is Basil Mahfouz Al-Kuwaiti.", "unrelated reference",
                                 "Who is the author born in Kuwait City in 1956?")


def test_content_f1_ignores_function_words():
    assert content_f1("the of and a", "the of and a") == 0.0
    assert content_f1("florist game developer", "a florist and a game developer") == 1.0


def test_context_prompt_and_world_models_do_not_read_context(tiny_world):
    hit = Item(1, "record", "Jaime Vasquez writes true crime.", "active")
    assert "Jaime Vasquez writes" in context_prompt("Who writes true crime?", [hit])
    assert context_prompt("Q?", []) == "Q?"
    assert not reads_context(tiny_world["model_path"], "auto") and reads_context(tiny_world["model_path"], "always")
