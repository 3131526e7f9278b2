"""The suite's reading of a world record (which model never knew an entity) and the rows it scores."""

import shutil

from lethe.data import author_qa, evaluation_rows, trainable_rows
from lethe.evaluate import metrics as M
from lethe.evaluate.suite import build_plan, evaluate, never_trained_reference, other_entities
from lethe.llm.backend import Backend
from lethe.unlearn.run import general_retain


def test_the_world_retain_model_never_knew_the_world_forget_authors(tiny_world):
    forget_authors = [author_qa(i)[0].author for i in (198, 199)]
    assert never_trained_reference(tiny_world["model_path"], forget_authors) == tiny_world["retain_model_path"]
    assert never_trained_reference(tiny_world["model_path"], [forget_authors[0].upper()]) is not None  # normalized


def test_no_reference_for_a_kept_author_a_mixed_list_nothing_or_a_model_outside_a_world(tiny_world, tmp_path):
    forget_author, kept_author = author_qa(198)[0].author, author_qa(0)[0].author
    assert never_trained_reference(tiny_world["model_path"], [kept_author]) is None
    assert never_trained_reference(tiny_world["model_path"], [forget_author, kept_author]) is None
    assert never_trained_reference(tiny_world["model_path"], []) is None
    plain = tmp_path / "model"
    shutil.copytree(tiny_world["model_path"], plain)
    assert never_trained_reference(plain, [forget_author]) is None


def test_other_entities_are_the_worlds_authors_less_the_targets(tiny_world):
    names = [a["name"] for a in tiny_world["authors"]]
    kept = other_entities(tiny_world["model_path"], [], {names[0].upper()})  # names compare normalized
    assert kept == names[1:]
    assert other_entities(tiny_world["model_path"], ["Ann Lee", names[1]], {names[1]}) == ["Ann Lee"]
    # an anchor that is no known author is kept out by the forget questions that name it
    assert other_entities(tiny_world["model_path"], ["Ann Lee", "Bo Chan"], set(),
                          ["Where does ann lee live?"]) == ["Bo Chan"]


def test_every_author_splits_into_an_evaluation_half_and_a_trainable_half():
    for index in (0, 25, 195):
        rows, scored, trained = author_qa(index), evaluation_rows(index), trainable_rows(index)
        assert len(scored) == len(trained) == len(rows) // 2
        assert set(scored) | set(trained) == set(rows) and not set(scored) & set(trained)


def test_the_evaluation_never_scores_a_row_the_general_retain_set_may_train_on(tiny_world, params, tmp_path):
    plain = tmp_path / "model"  # outside a world: every TOFU author could be known
    shutil.copytree(tiny_world["model_path"], plain)
    cfg = params.evaluate.model_copy(update={"neighbor_rows": 10_000, "retain_rows": 10_000})
    target = author_qa(199)[0].author
    plan = build_plan(plain, cfg, targets=[target])
    scored = {r.question for r in [*plan.retain, *plan.neighbors]}
    trained = {q for q, _ in general_retain(plain, 10_000, seed=0, avoid_authors={target})}
    assert scored and trained and not scored & trained
    assert {r.author for r in plan.neighbors} >= {author_qa(25)[0].author, author_qa(195)[0].author}


def test_each_other_entitys_retention_says_how_many_answers_it_rests_on(tiny_world, params):
    cfg = params.evaluate.model_copy(update={"retain_rows": 6, "neighbor_rows": 4, "general_rows": 2,
                                             "max_new_tokens": 4, "probes": False, "mia": False})
    plan = build_plan(tiny_world["model_path"], cfg, targets=[author_qa(199)[0].author])
    metrics = evaluate(Backend.load(tiny_world["model_path"], "cpu"), plan, cfg, None)
    answers = metrics[M.ENTITY_ANSWERS]
    assert answers.keys() == metrics[M.ENTITY_ROUGE].keys()
    assert sum(answers.values()) == len([r for r in [*plan.retain, *plan.neighbors] if r.author]) == 10
