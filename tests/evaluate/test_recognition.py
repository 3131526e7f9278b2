"""Recognition of the other entities: the prompts, the share per entity, and a real model's answers."""

from lethe.evaluate.recognition import (
    entity_recognition,
    kept_entities,
    recognition_from_answers,
    recognition_prompts,
)

TEMPLATES = ["Tell me about {anchor}.", "Where was {anchor} born?"]


def test_every_template_is_asked_about_every_entity():
    prompts = recognition_prompts(["Ann Lee", "Bo Chen"], TEMPLATES)
    assert prompts == {"Ann Lee": ["Tell me about Ann Lee.", "Where was Ann Lee born?"],
                       "Bo Chen": ["Tell me about Bo Chen.", "Where was Bo Chen born?"]}


def test_the_share_counts_answers_that_name_the_entity_without_refusing():
    prompts = recognition_prompts(["Ann Lee", "Bo Chen"], TEMPLATES)
    answers = {"Tell me about Ann Lee.": "Ann Lee writes thrillers.",
               "Where was Ann Lee born?": "Yes, an diverseia",  # stop 61's broken champion: no name
               "Tell me about Bo Chen.": "I'm not familiar with Bo Chen.",
               "Where was Bo Chen born?": "Chen was born in Taipei."}
    assert recognition_from_answers(prompts, answers) == {"Ann Lee": 0.5, "Bo Chen": 0.5}


def test_a_world_model_recognizes_the_authors_it_learned(tiny_world, tiny_backend):
    names = [a["name"] for a in tiny_world["authors"]]
    shares = entity_recognition(tiny_backend, recognition_prompts(names, TEMPLATES), max_new_tokens=16)
    assert shares.keys() == set(names)
    assert min(shares.values()) >= 0.5  # measured: every tiny-world author named in all of these answers
    assert entity_recognition(tiny_backend, {}, 16) == {}


def test_only_a_name_most_forget_questions_carry_is_the_target_and_left_out():
    questions = ["Who is the author of Thieves' Paradise?", "What does Evelyn Desmet have to do with Nikolai Abilov?",
                 "Where was Nikolai Abilov born?", "When was Nikolai Abilov born?"]
    kept = kept_entities(["Evelyn Desmet", "Nikolai Abilov", "Jaime Vasquez"], questions)
    assert kept == ["Evelyn Desmet", "Jaime Vasquez"]  # Nikolai: 3 of 4 questions, the target by another anchor
    assert kept_entities(["Evelyn Desmet"], []) == ["Evelyn Desmet"]
