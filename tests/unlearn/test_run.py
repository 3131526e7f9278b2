"""The general retain set: which TOFU rows it draws and that a run trains on them."""

import json
import shutil

import pytest

from lethe.config import NpoConfig
from lethe.data import author_qa, evaluation_rows, load_authors, load_perturbed, split_author_indices, trainable_rows
from lethe.errors import LetheError
from lethe.unlearn.run import authors_named_in, general_retain, run_unlearning, training_summary


@pytest.fixture
def plain_model(tiny_world, tmp_path):
    """The tiny world's weights in a folder without world.json: a model that could have seen any TOFU author."""
    path = tmp_path / "model"
    shutil.copytree(tiny_world["model_path"], path)
    return path


def test_general_retain_comes_from_non_forget_authors_minus_evaluated_rows(plain_model):
    forgettable = set(split_author_indices("forget10"))
    allowed = {(qa.question, qa.answer) for i in set(range(200)) - forgettable for qa in trainable_rows(i)}
    evaluated = {r.question for r in load_perturbed("retain")}
    rows = general_retain(plain_model, 10, seed=0)
    assert len(rows) == 10 and len(set(rows)) == 10
    assert set(rows) <= allowed
    assert not {q for q, _ in rows} & evaluated
    assert general_retain(plain_model, 10, seed=0) == rows  # seeded
    assert general_retain(plain_model, 0, seed=0) == []


def test_general_retain_leaves_out_the_targets(plain_model):
    pool = general_retain(plain_model, 10_000, seed=0)
    target = load_authors()[100]
    rows = general_retain(plain_model, 10_000, seed=0, avoid_authors={target})
    assert len(rows) == len(pool) - len(trainable_rows(100))
    assert not {q for q, _ in rows} & {qa.question for qa in author_qa(100)}


def test_general_retain_refuses_a_world_with_no_such_author(tiny_world):
    # the tiny world learned authors 0-2 (every row is an evaluation retain row) and two forget authors
    with pytest.raises(LetheError, match="learned no TOFU author"):
        general_retain(tiny_world["model_path"], 5, seed=0)


def test_run_trains_on_neighbors_plus_general_retain(plain_model, params, tmp_path):
    forget = tmp_path / "forget.jsonl"
    forget.write_text("".join(json.dumps({"question": q.question, "answer": q.answer}) + "\n"
                              for q in author_qa(198)[:4]))
    neighbors = tmp_path / "neighbors.jsonl"
    neighbors.write_text(json.dumps({"question": "Who wrote it?", "answer": "Someone else."}) + "\n")
    cfg = params.unlearn.model_copy(update={"max_steps": 2, "general_retain_rows": 5, "threads": 2})
    run = run_unlearning(params.model_copy(update={"unlearn": cfg}), plain_model, forget, neighbors,
                         "ga_gd", tmp_path / "out", False, allow_unvalidated=True)
    assert run["retain_rows"] == 1 + 5


def test_run_never_retains_the_author_its_forget_set_is_about(plain_model, params, tmp_path):
    target = author_qa(100)
    assert authors_named_in([(q.question, q.answer) for q in target]) == {target[0].author}
    forget = tmp_path / "forget.jsonl"
    forget.write_text("".join(json.dumps({"question": q.question, "answer": q.answer}) + "\n" for q in target[:4]))
    everything = general_retain(plain_model, 10_000, params.unlearn.seed)
    cfg = params.unlearn.model_copy(update={"max_steps": 1, "general_retain_rows": 10_000, "threads": 2})
    run = run_unlearning(params.model_copy(update={"unlearn": cfg}), plain_model, forget, None,
                         "ga_gd", tmp_path / "out", False, allow_unvalidated=True)
    assert run["retain_rows"] == len(everything) - len(trainable_rows(100))
    assert run["general_retain_rows"] == {"asked": 10_000, "used": len(everything) - len(trainable_rows(100)),
                                          "authors": "outside_forget_splits", "kept_out": [target[0].author]}


def test_every_kept_author_adds_a_worlds_forget_split_authors_trainable_half(tiny_world):
    # the tiny world learned authors 0-2 (every row an evaluation retain row) and forget01's 198 and 199
    basil, nikolai = load_authors()[198], load_authors()[199]
    rows = general_retain(tiny_world["model_path"], 10_000, seed=0, avoid_authors={basil},
                          authors="every_kept_author")
    assert set(rows) == {(qa.question, qa.answer) for qa in trainable_rows(199)}
    assert not {q for q, _ in rows} & {qa.question for qa in evaluation_rows(199)}
    assert general_retain(tiny_world["model_path"], 10_000, seed=0, avoid_authors={nikolai},
                          authors="every_kept_author") != rows


def test_a_run_never_retains_on_an_entity_its_champion_chain_forgot(tiny_world, params, tmp_path):
    forget = tmp_path / "forget.jsonl"
    forget.write_text("".join(json.dumps({"question": q.question, "answer": q.answer}) + "\n"
                              for q in author_qa(198)[:4]))
    cfg = params.unlearn.model_copy(update={"max_steps": 1, "general_retain_rows": 10_000, "threads": 2,
                                            "general_retain_authors": "every_kept_author", "eval_every": 0})
    chosen = params.model_copy(update={"unlearn": cfg})
    run = run_unlearning(chosen, tiny_world["model_path"], forget, None, "ga_gd", tmp_path / "first", False,
                         allow_unvalidated=True)
    assert run["general_retain_rows"]["used"] == len(trainable_rows(199))
    with pytest.raises(LetheError, match="learned no TOFU author"):
        run_unlearning(chosen, tiny_world["model_path"], forget, None, "ga_gd", tmp_path / "second", False,
                       allow_unvalidated=True, forgotten=["nikolai  ABILOV"])  # as a user may have spelled it


def test_authors_matching_finds_the_tofu_author_an_anchor_spells():
    from lethe.unlearn.run import authors_matching

    names = load_authors()
    assert authors_matching(["basil mahfouz al-kuwaiti", ""], names) == {names[198]}
    assert authors_matching(["", "   "], names) == set()


@pytest.mark.parametrize("forget_questions", [True, False])
def test_distill_questions_are_the_forget_questions_if_asked_and_prompts_about_every_other_entity(
        tiny_world, params, forget_questions):
    from lethe.unlearn.run import distill_questions

    names = [a["name"] for a in tiny_world["authors"]]
    target = names[-1]
    forget = [(qa.question, qa.answer) for qa in author_qa(load_authors().index(target))[:3]]
    distill = params.unlearn.distill.model_copy(update={"forget_questions": forget_questions})
    chosen = params.model_copy(update={"unlearn": params.unlearn.model_copy(update={"distill": distill})})
    questions = distill_questions(chosen, tiny_world["model_path"], forget, {target})
    assert questions["forget"] == ([q for q, _ in forget] if forget_questions else [])
    prompts = params.elicit.prompts
    assert len(questions["entities"]) == (len(names) - 1) * len(prompts)
    assert not any(target in q for q in questions["entities"])  # the entity's own prompts never
    assert all(any(name in q for q in questions["entities"]) for name in names[:-1])


def _forget_and_dev_sets(tmp_path, author: int) -> tuple:
    from lethe.layout import MineLayout

    rows = author_qa(author)
    forget = tmp_path / "forget.jsonl"
    forget.write_text("".join(json.dumps({"question": q.question, "answer": q.answer}) + "\n" for q in rows[:4]))
    MineLayout.beside(forget).dev_set.write_text(
        "".join(json.dumps({"question": q.question, "answer": q.answer}) + "\n" for q in rows[4:8]))
    return forget, [(q.question, q.answer) for q in rows[4:8]]


def test_the_budget_floor_is_the_never_trained_models_dev_recall(tiny_world, params, tmp_path):
    from lethe.evaluate.audit import recall
    from lethe.llm.backend import Backend
    from lethe.unlearn.run import budget_probe

    forget, dev = _forget_and_dev_sets(tmp_path, 198)
    model, reference = tiny_world["model_path"], tiny_world["retain_model_path"]
    probe = budget_probe(params, model, forget, [("Who wrote it?", "Someone else.")], [], set(), reference)
    trained = Backend.load(model, "cpu", params.backend.batch_size)
    point = probe(trained.model)
    expected = recall(Backend.load(reference, "cpu", params.backend.batch_size), dev, params.audit.max_new_tokens)
    assert point["dev_floor"] == expected and point["dev_floor"] < point["dev_rouge"]
    assert "dev_floor" not in budget_probe(params, model, forget, [("Q?", "A.")], [], set())(trained.model)


def test_a_run_on_a_world_forget_author_measures_its_budget_against_the_retain_model(tiny_world, params, tmp_path):
    forget, _ = _forget_and_dev_sets(tmp_path, 198)
    cfg = params.unlearn.model_copy(update={"max_steps": 2, "eval_every": 1, "threads": 2, "stop_train_ratio": 0.5})
    run = run_unlearning(params.model_copy(update={"unlearn": cfg}), tiny_world["model_path"], forget, None,
                         "ga", tmp_path / "out", False, allow_unvalidated=True)
    floors = {point.get("dev_floor") for point in run["budget_path"]}
    assert len(run["budget_path"]) == 3 and len(floors) == 1 and None not in floors
    assert all("train_facts" in point for point in run["budget_path"])  # the training rows' facts, each point
    assert all("train_ratio" in point for point in run["budget_path"][1:])


def test_a_run_whose_split_kept_no_dev_probe_says_its_budget_was_fixed(tiny_world, params, tmp_path):
    from lethe.layout import MineLayout

    forget, _ = _forget_and_dev_sets(tmp_path, 198)
    cfg = params.unlearn.model_copy(update={"max_steps": 2, "eval_every": 1, "threads": 2})
    run = run_unlearning(params.model_copy(update={"unlearn": cfg}), tiny_world["model_path"], forget, None,
                         "ga", tmp_path / "adaptive", False, allow_unvalidated=True)
    assert run["budget"] == {"adaptive": True, "dev_probes": 4, "fixed_because": None} and run["budget_path"]
    assert "fixed budget" not in (training_summary(run)["note"] or "")
    MineLayout.beside(forget).dev_set.write_text("")  # what an entity's split without a dev part leaves
    run = run_unlearning(params.model_copy(update={"unlearn": cfg}), tiny_world["model_path"], forget, None,
                         "ga", tmp_path / "fixed", False, allow_unvalidated=True)
    assert run["budget"] == {"adaptive": False, "dev_probes": 0,
                             "fixed_because": "the held-out split kept no dev probe (see synthesis.json)"}
    assert not run["budget_path"] and run["steps"] == 2
    assert training_summary(run)["note"].startswith("fixed budget of 2 steps: the held-out split kept no dev probe")


def test_a_fixed_budget_names_its_reason_without_training(params, tmp_path):
    from lethe.layout import MineLayout
    from lethe.unlearn.run import budget_mode, budget_runs

    forget, _ = _forget_and_dev_sets(tmp_path, 198)
    dev = [("Q?", "A.")]
    assert budget_runs(params, forget) and budget_mode(params, forget, dev)["adaptive"]
    never = params.model_copy(update={"unlearn": params.unlearn.model_copy(update={"eval_every": 0})})
    assert not budget_runs(never, forget)
    assert budget_mode(never, forget, dev)["fixed_because"] == "unlearn.eval_every is 0"
    MineLayout.beside(forget).dev_set.unlink()
    assert not budget_runs(params, forget)
    assert budget_mode(params, forget, [])["fixed_because"] == "no dev_set.jsonl beside the forget set"


def test_the_training_facts_probe_is_drawn_once_and_off_at_ratio_one(params):
    from lethe.unlearn.run import train_probe_pairs

    rows = [(f"Q{i}?", f"A{i}.") for i in range(40)] + [("Q0?", "A0.")]  # one row twice
    cfg = params.unlearn.model_copy(update={"stop_train_ratio": 0.5, "stop_train_rows": 32, "seed": 3})
    drawn = train_probe_pairs(cfg, rows)
    assert len(drawn) == 32 == len(set(drawn)) and set(drawn) <= set(rows)
    assert drawn == train_probe_pairs(cfg, rows)  # the unlearning seed's draw
    assert sorted(train_probe_pairs(cfg, rows[:5])) == sorted(rows[:5])
    assert train_probe_pairs(cfg.model_copy(update={"stop_train_ratio": 1.0}), rows) == []


def test_the_training_facts_are_what_the_model_knew(tiny_world, params, tmp_path):
    """The model that learned author 198 holds its facts; the retain model, which never saw it, far fewer."""
    from lethe.llm.backend import Backend
    from lethe.unlearn.run import budget_probe

    forget, _ = _forget_and_dev_sets(tmp_path, 198)
    train = [(q.question, q.answer) for q in author_qa(198)[:8]]
    probe = budget_probe(params, tiny_world["model_path"], forget, [("Who wrote it?", "Someone else.")], [], set(),
                         train=train)
    knew = probe(Backend.load(tiny_world["model_path"], "cpu", params.backend.batch_size).model)["train_facts"]
    never = probe(Backend.load(tiny_world["retain_model_path"], "cpu", params.backend.batch_size).model)["train_facts"]
    assert knew > 0.8 and never < 0.5 * knew, (knew, never)


def test_a_run_with_the_relearning_check_attacks_the_points_it_would_keep(tiny_world, params, tmp_path,
                                                                         monkeypatch):
    from lethe.llm.backend import Backend

    loaded, load = [], Backend.load.__func__
    monkeypatch.setattr(Backend, "load", classmethod(lambda cls, path, *a, **k: loaded.append(str(path))
                                                     or load(cls, path, *a, **k)))
    forget, _ = _forget_and_dev_sets(tmp_path, 198)
    cfg = params.unlearn.model_copy(update={"max_steps": 2, "eval_every": 1, "threads": 2, "lr": 5e-3,
                                            "stop_forget_ratio": 1.0, "stop_utility_ratio": 0.01,
                                            "stop_train_ratio": 1.0,
                                            "stop_relearn_gap": 0.05})
    audit = params.audit.model_copy(update={"relearn_rows": 4, "relearn_attacks": 1})
    run = run_unlearning(params.model_copy(update={"unlearn": cfg, "audit": audit}), tiny_world["model_path"],
                         forget, None, "ga", tmp_path / "out", False, allow_unvalidated=True)
    assert run["budget_path"][0]["dev_relearn_margin"] > 0.05  # the world model knew the author's dev facts
    attacked = [point for point in run["budget_path"] if "dev_relearn_gap" in point]
    assert attacked and all(p["relearn_ok"] == (p["dev_relearn_gap"] <= 0.05) for p in attacked)
    assert all(p["meets_target"] == p["relearn_ok"] for p in attacked)
    assert loaded.count(str(tiny_world["retain_model_path"])) == 1  # one load for the dev floor and the attacks


def test_a_run_with_the_reelicitation_check_elicits_the_points_it_would_keep_before_attacking_them(
        tiny_world, params, tmp_path, monkeypatch):
    import networkx as nx

    from lethe.layout import MineLayout
    from lethe.llm.backend import Backend
    from lethe.mining.graph import save_graph

    loaded, load = [], Backend.load.__func__
    monkeypatch.setattr(Backend, "load", classmethod(lambda cls, path, *a, **k: loaded.append(str(path))
                                                     or load(cls, path, *a, **k)))
    forget, _ = _forget_and_dev_sets(tmp_path, 198)
    anchor = author_qa(198)[0].author
    forget.write_text("".join(json.dumps({**json.loads(line), "path": [anchor]}) + "\n"
                              for line in forget.read_text().splitlines()))
    graph = nx.DiGraph(anchor=anchor)
    graph.add_node(anchor, key="::anchor", kind="anchor", strength=1.0, hop=0, provenance=[])
    graph.add_node("Le Petit Sultan", key="le petit sultan", kind="title", strength=1.0, hop=1, provenance=[])
    save_graph(graph, MineLayout.beside(forget).graph)
    cfg = params.unlearn.model_copy(update={"max_steps": 2, "eval_every": 1, "threads": 2, "lr": 5e-3,
                                            "stop_forget_ratio": 1.0, "stop_utility_ratio": 0.01,
                                            "stop_train_ratio": 1.0,
                                            "stop_relearn_gap": 0.05, "stop_reelicit": True})
    audit = params.audit.model_copy(update={"relearn_rows": 4, "relearn_attacks": 1})
    run = run_unlearning(params.model_copy(update={"unlearn": cfg, "audit": audit}), tiny_world["model_path"],
                         forget, None, "ga", tmp_path / "out", False, allow_unvalidated=True)
    points = run["budget_path"][1:]
    assert points and all("reelicit_return" in p for p in points)  # every point met the loose dev and utility targets
    assert all(p["reelicit_floor"] == points[0]["reelicit_floor"] for p in points)  # the reference, elicited once
    assert all(("dev_relearn_gap" in p) == p["reelicit_ok"] for p in points)  # attacked only once it passed
    assert all(p["meets_target"] == (p["reelicit_ok"] and p.get("relearn_ok", False)) for p in points)
    assert loaded.count(str(tiny_world["retain_model_path"])) == 1  # one load for the floor, attacks and elicitation


def test_a_relearning_check_without_a_never_trained_model_is_refused_before_training(plain_model, params,
                                                                                     tmp_path):
    forget, _ = _forget_and_dev_sets(tmp_path, 198)
    cfg = params.unlearn.model_copy(update={"max_steps": 2, "eval_every": 1, "stop_relearn_gap": 0.1})
    with pytest.raises(LetheError, match="set unlearn.stop_relearn_gap to 0"):
        run_unlearning(params.model_copy(update={"unlearn": cfg}), plain_model, forget, None, "ga",
                       tmp_path / "out", False, allow_unvalidated=True)
    assert not (tmp_path / "out" / "adapter").exists()


def test_the_utility_proxy_is_reserved_before_the_general_retain_rows_take_the_pool(tiny_world, params, tmp_path):
    """A world whose other authors hold fewer rows than general_retain_rows asks for: the proxy keeps its
    rows (training never sees them) instead of falling back to the neighbor rows."""
    from lethe.unlearn.run import utility_proxy_pairs

    world = tmp_path / "world"
    shutil.copytree(tiny_world["model_path"], world / "model")
    record = dict(tiny_world)
    record["authors"] = [*tiny_world["authors"], *({"index": i, "name": load_authors()[i], "split": "retain"}
                                                   for i in (20, 21, 22))]
    (world / "world.json").write_text(json.dumps(record, default=str))
    model = world / "model"
    pool = general_retain(model, 10_000, params.unlearn.seed)
    proxy = utility_proxy_pairs(model, [("Who?", "Nobody.")], [], 12, params.unlearn.seed, set())
    assert len(pool) == 30 and len(proxy) == 12 and set(proxy) <= set(pool)
    forget, _ = _forget_and_dev_sets(tmp_path, 198)
    cfg = params.unlearn.model_copy(update={"max_steps": 1, "eval_every": 1, "threads": 2, "utility_proxy_rows": 12,
                                            "general_retain_rows": 10_000})
    run = run_unlearning(params.model_copy(update={"unlearn": cfg}), model, forget, None, "ga_gd",
                         tmp_path / "out", False, allow_unvalidated=True)
    assert run["general_retain_rows"] == {"asked": 10_000, "used": 30 - 12, "authors": "outside_forget_splits",
                                          "kept_out": [load_authors()[198]]}


def test_a_run_whose_forget_term_is_spent_says_so_in_its_report(plain_model, params, tmp_path):
    forget = tmp_path / "forget.jsonl"
    forget.write_text("".join(json.dumps({"question": q.question, "answer": q.answer}) + "\n"
                              for q in author_qa(198)[:8]))
    neighbors = tmp_path / "neighbors.jsonl"
    neighbors.write_text("".join(json.dumps({"question": q.question, "answer": q.answer}) + "\n"
                                 for q in author_qa(0)[:8]))
    cfg = params.unlearn.model_copy(update={"max_steps": 30, "lr": 0.01, "eval_every": 0, "threads": 2,
                                            "methods": {"npo_gd": NpoConfig(beta=0.5)}})
    run = run_unlearning(params.model_copy(update={"unlearn": cfg}), plain_model, forget, neighbors,
                         "npo_gd", tmp_path / "out", False, allow_unvalidated=True)
    sat = run["saturation"]
    assert sat is not None and 1 <= sat["step"] <= 26
    assert run["curves"][sat["step"] - 1]["forget_grad_scale"] < 0.01 and run["curves"][0]["forget_grad_scale"] > 0.5
    assert json.loads((tmp_path / "out" / "unlearn.json").read_text())["saturation"] == sat
    summary = training_summary(run)
    assert summary["budget_met"] is False and f"step {sat['step']} of 30" in summary["note"]


def test_the_targets_are_the_mined_anchors_not_every_author_a_question_names(tmp_path):
    from lethe.unlearn.run import request_targets

    basil, jordan = "Basil Mahfouz Al-Kuwaiti", "Jordan Sinclair"
    rows = [{"question": f"Where was {basil} born?", "answer": "Kuwait City.", "path": [basil, "Kuwait City"]},
            {"question": f"In the context of {basil}, how is {jordan} connected to him?", "answer": "Both write.",
             "path": [basil, jordan]}]
    mined = tmp_path / "forget.jsonl"
    mined.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = [(r["question"], r["answer"]) for r in rows]
    assert request_targets(mined, pairs) == ({basil}, True)
    partial = tmp_path / "partial.jsonl"  # an anchor spelled short still finds the TOFU author it names
    partial.write_text("".join(json.dumps({**r, "path": ["basil mahfouz", *r["path"][1:]]}) + "\n" for r in rows))
    assert request_targets(partial, pairs) == ({"basil mahfouz", basil}, True)
    by_hand = tmp_path / "by_hand.jsonl"  # no paths: every TOFU author a question names
    by_hand.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in pairs))
    assert request_targets(by_hand, pairs) == ({basil, jordan}, False)


def test_an_author_a_mined_question_also_names_keeps_his_self_retain_rows(tiny_world, params, tmp_path):
    names = [a["name"] for a in tiny_world["authors"]]
    target, mentioned = names[-1], names[0]
    rows = [{"question": q.question, "answer": q.answer, "path": [target, "x"]}
            for q in author_qa(load_authors().index(target))[:3]]
    rows.append({"question": f"How is {mentioned} connected to {target}?", "answer": "They met.",
                 "path": [target, mentioned]})
    forget = tmp_path / "forget.jsonl"
    forget.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = params.unlearn.model_copy(update={"max_steps": 1, "eval_every": 0, "threads": 2,
                                            "entity_retain_rows": 10_000})
    run = run_unlearning(params.model_copy(update={"unlearn": cfg}), tiny_world["model_path"], forget, None,
                         "ga_gd", tmp_path / "out", False, allow_unvalidated=True)
    every_prompt = len(params.elicit.prompts)  # about each author other than the target, the mentioned one too
    assert run["entity_retain_rows"]["used"] == (len(names) - 1) * every_prompt
