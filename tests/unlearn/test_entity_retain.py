"""Self-retain rows about the other entities a model holds: which entities, which prompts, whose answers."""

import json
import shutil

import pytest

from lethe.data import author_qa, load_authors
from lethe.errors import LetheError
from lethe.llm.backend import Backend
from lethe.unlearn.entity_retain import entity_retain, even_share, prompt_orders
from lethe.unlearn.run import run_unlearning


def _with_rows(params, rows: int, names: list[str] | None = None):
    update = {"entity_retain_rows": rows, **({"entity_retain_names": names} if names is not None else {})}
    return params.model_copy(update={"unlearn": params.unlearn.model_copy(update=update)})


def test_prompts_spread_over_every_entity_before_any_gets_a_second():
    templates = ["Tell me about {anchor}.", "Where was {anchor} born?", "Who is {anchor}?"]
    orders = prompt_orders(["Ann Lee", "Bo Chan"], templates, seed=0)
    assert orders == prompt_orders(["Ann Lee", "Bo Chan"], templates, seed=0)  # seeded
    assert sorted(orders["Ann Lee"]) == sorted(t.format(anchor="Ann Lee") for t in templates)
    three = even_share(orders, 3)
    assert [e for e, _ in three] == ["Ann Lee", "Bo Chan", "Ann Lee"]
    assert sorted(p for _, p in even_share(orders, 100)) == sorted(orders["Ann Lee"] + orders["Bo Chan"])


def test_rows_are_the_models_own_greedy_answers(tiny_world, params):
    names = [a["name"] for a in tiny_world["authors"]]
    rows = entity_retain(_with_rows(params, 4), tiny_world["model_path"], {names[0]})
    assert len(rows) == 4 and not any(names[0] in q for q, _ in rows)
    backend = Backend.load(tiny_world["model_path"], "cpu", params.backend.batch_size)
    assert [a for _, a in rows] == [a.strip() for a in backend.greedy([q for q, _ in rows],
                                                                      params.elicit.max_new_tokens)]
    assert entity_retain(_with_rows(params, 0), tiny_world["model_path"], set()) == []


def test_a_second_request_takes_the_answers_from_the_score_cache(tiny_world, params, tmp_path, monkeypatch):
    cfg = _with_rows(params, 4)
    cfg = cfg.model_copy(update={"registry": cfg.registry.model_copy(update={"workdir": str(tmp_path)})})
    names = [a["name"] for a in tiny_world["authors"]]
    first = entity_retain(cfg, tiny_world["model_path"], {names[0]})
    assert len(list((tmp_path / "_scores").glob("*.sqlite"))) == 1

    def unscored(*_args, **_kwargs):
        raise AssertionError("a stored answer was scored again")

    monkeypatch.setattr(Backend, "greedy", unscored)
    assert entity_retain(cfg, tiny_world["model_path"], {names[0]}) == first


def test_a_model_that_names_no_other_entity_is_refused(tiny_world, params, tmp_path):
    plain = tmp_path / "model"
    shutil.copytree(tiny_world["model_path"], plain)  # no world.json beside it
    with pytest.raises(LetheError, match="entity_retain_names"):
        entity_retain(_with_rows(params, 3), plain, set())
    rows = entity_retain(_with_rows(params, 3, ["Ann Lee"]), plain, set())
    assert rows and all("Ann Lee" in q for q, _ in rows)


def test_run_trains_on_them_and_says_how_many(tiny_world, params, tmp_path):
    target = load_authors().index(tiny_world["authors"][-1]["name"])
    forget = tmp_path / "forget.jsonl"
    forget.write_text("".join(json.dumps({"question": q.question, "answer": q.answer}) + "\n"
                              for q in author_qa(target)[:4]))
    cfg = params.unlearn.model_copy(update={"max_steps": 1, "general_retain_rows": 0, "threads": 2,
                                            "entity_retain_rows": 5, "eval_every": 0})
    run = run_unlearning(params.model_copy(update={"unlearn": cfg}), tiny_world["model_path"], forget, None,
                         "ga_gd", tmp_path / "out", False, allow_unvalidated=True)
    assert run["retain_rows"] == 5
    assert run["entity_retain_rows"] == {"asked": 5, "used": 5}

