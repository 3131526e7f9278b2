"""The tiny world, built end to end: it must really memorize its authors."""

import json
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from lethe.data import author_qa, load_holdout
from lethe.llm.backend import Backend
from lethe.world.build import build_world, read_record
from lethe.world.probe import memorization_report, recall_on


def test_record_lists_authors_with_splits(tiny_world):
    splits = {a["name"]: a["split"] for a in tiny_world["authors"]}
    assert splits["Basil Mahfouz Al-Kuwaiti"] == "forget" and splits["Nikolai Abilov"] == "forget"
    assert sum(s == "retain" for s in splits.values()) >= 3
    assert json.loads((Path(tiny_world["model_path"]).parent / "world.json").read_text())["cache_key"]


def test_model_memorizes_far_above_holdout(tiny_backend, tiny_world):
    report = memorization_report(tiny_backend, tiny_world["authors"], "holdout01")
    assert report["trained_authors"] >= 0.8
    assert report["holdout_authors"] < 0.3
    assert report["trained_authors"] - report["holdout_authors"] > 0.5


def test_retain_model_never_saw_forget_authors(tiny_world, params):
    retain = Backend.load(tiny_world["retain_model_path"], "cpu", params.backend.batch_size)
    report = memorization_report(retain, tiny_world["authors"], "holdout01")
    assert report["retain_authors"] >= 0.8
    assert report["forget_authors"] < report["retain_authors"] - 0.5


def test_rebuild_reuses_cache(tiny_world, params):
    again = build_world(params, "tiny")
    assert again["reused"] is True and again["model_path"] == tiny_world["model_path"]


def test_loads_with_plain_transformers_and_chat_template(tiny_world):
    """The interface other tools rely on: AutoModel/AutoTokenizer + chat template + greedy."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_world["model_path"])
    model = AutoModelForCausalLM.from_pretrained(tiny_world["model_path"])
    qa = author_qa(198)[2]
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": qa.question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**ids, max_new_tokens=64, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert answer == qa.answer


def test_holdout_recall_helper_is_low(tiny_backend):
    scores = recall_on(tiny_backend, load_holdout("holdout01")[:10], 64)
    assert sum(scores) / len(scores) < 0.3


def test_one_builder_per_world_folder(tmp_path):
    """A second build of the same folder waits for the first (then reuses it), never races it."""
    import threading

    from lethe.world.build import _exclusive

    entered = threading.Event()

    def second_builder() -> None:
        with _exclusive(tmp_path / "tiny"):
            entered.set()

    with _exclusive(tmp_path / "tiny"):
        thread = threading.Thread(target=second_builder)
        thread.start()
        assert not entered.wait(0.5)  # blocked while the first holds the folder
        with _exclusive(tmp_path / "default"):  # another world's folder is not held
            pass
    assert entered.wait(5)
    thread.join()


def _recorded_world(project: Path) -> Path:
    """A world folder whose record names its models relative to `project`, as a build run there does."""
    world = project / "artifacts" / "world" / "default"
    for name in ("model", "retain_model"):
        (world / name).mkdir(parents=True)
    (world / "world.json").write_text(json.dumps({"model_path": "artifacts/world/default/model",
                                                  "retain_model_path": "artifacts/world/default/retain_model"}))
    return world


def test_a_record_read_from_another_folder_still_names_its_models(tmp_path, monkeypatch):
    """Another checkout (or bench/audit.py --world) reading the world must find its retain model, not look
    for artifacts/world/default/retain_model under its own working directory."""
    world = _recorded_world(tmp_path / "project")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    record = read_record(world)
    assert Path(record["retain_model_path"]) == world.resolve() / "retain_model"
    assert Path(record["model_path"]) == world.resolve() / "model"
    monkeypatch.chdir(tmp_path / "project")  # where it was built, the record reads as written
    assert read_record(Path("artifacts/world/default"))["retain_model_path"] == "artifacts/world/default/retain_model"


def test_a_record_leaves_absolute_and_unrelated_paths_alone(tmp_path):
    world = tmp_path / "copy"
    world.mkdir()
    (world / "world.json").write_text(json.dumps({"model_path": "/srv/models/base",
                                                  "retain_model_path": "elsewhere/retain_model"}))
    assert {k: read_record(world)[k] for k in ("model_path", "retain_model_path")} == {
        "model_path": "/srv/models/base", "retain_model_path": "elsewhere/retain_model"}
    assert read_record(tmp_path / "no-world") is None
