"""The forget term's token mask: renaming the entity, aligning tokens, and what the mask keeps."""

import json

import pytest

from lethe.data import author_qa, load_authors
from lethe.errors import LetheError
from lethe.llm.backend import Backend
from lethe.llm.batching import IGNORE_INDEX, collate_qa
from lethe.llm.format import EncodedQA
from lethe.unlearn.specific_tokens import renamer, specific_masks, specificity


def test_every_mention_is_renamed_and_every_other_span_maps_to_its_place():
    rename = renamer(["Basil Mahfouz Al-Kuwaiti"], "Erick Gustafsson")
    text = "Basil Mahfouz Al-Kuwaiti was born in Kuwait. Later Basil wrote; Al-Kuwaiti's books sold."
    swap = rename(text)
    assert swap.text == "Erick Gustafsson was born in Kuwait. Later Erick wrote; Gustafsson's books sold."
    for word in ("born", "Kuwait.", "wrote", "'s books sold."):
        start = text.index(word)
        new_start, new_end = swap.mapped(start, start + len(word))
        assert swap.text[new_start:new_end] == word
    assert swap.mapped(0, 5) is None and swap.in_mention(0, 5)  # inside the first mention
    assert renamer(["Ann Lee"], "Bo Chan")("Annabel Leeds").text == "Annabel Leeds"  # whole words only


def test_a_loss_mask_takes_the_left_out_answer_tokens_out_of_the_labels():
    item = EncodedQA([1, 2], [3, 4, 5], loss_mask=(True, False, True))
    labels = collate_qa([item, EncodedQA([1, 2], [3, 4, 5])], pad_id=0)["labels"].tolist()
    assert labels[0] == [IGNORE_INDEX, IGNORE_INDEX, 3, IGNORE_INDEX, 5]
    assert labels[1] == [IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5]


@pytest.fixture(scope="module")
def target_rows(tiny_world):
    names = [a["name"] for a in tiny_world["authors"]]
    target = names[-1]
    rows = [(q.question, q.answer) for q in author_qa(load_authors().index(target))[:6]]
    return target, [n for n in names if n != target][:3], rows


def test_the_first_token_of_a_fact_is_specific_and_a_memorized_continuation_is_not(tiny_world, target_rows):
    """A world model reproduces a gold answer verbatim: once a fact has begun, the rest follows from the
    answer itself whoever the question is about, and only where the target's answer parts from what
    another author's would say does the log-probability drop."""
    target, others, rows = target_rows
    backend = Backend.load(tiny_world["model_path"], "cpu", 8)
    scores = specificity(backend, rows, [target], others)
    finite = [v for row in scores for v in row if v != float("inf")]
    assert max(finite) > 3.0  # the fact's first token: nats lost when the question names someone else
    assert sum(abs(v) < 0.5 for v in finite) / len(finite) > 0.5  # most tokens follow from the answer itself
    masks = specific_masks(backend, rows, [target], others, margin=1.0)
    assert [len(m) for m in masks] == [len(s) for s in scores] and all(any(m) for m in masks)
    kept = sum(map(sum, masks)) / sum(map(len, masks))
    assert 0.02 < kept < 0.6
    assert specific_masks(backend, rows, [target], others, margin=1.0) == masks  # deterministic


def test_min_keeps_a_token_only_where_it_drops_under_every_swap(tiny_world, target_rows):
    """The min aggregate is, token by token, the smallest of the single-swap drops: a token another
    entity also makes likely is not counted as the target's."""
    target, others, rows = target_rows
    backend = Backend.load(tiny_world["model_path"], "cpu", 8)
    single = [specificity(backend, rows, [target], [other]) for other in others]
    smallest = specificity(backend, rows, [target], others, "min")
    mean = specificity(backend, rows, [target], others)
    for r, row in enumerate(smallest):
        for t, value in enumerate(row):
            drops = [s[r][t] for s in single]
            assert value == pytest.approx(min(drops), abs=1e-4)
            assert mean[r][t] == pytest.approx(sum(drops) / len(drops), abs=1e-4)
    kept_min = sum(map(sum, specific_masks(backend, rows, [target], others, 1.0, "min")))
    assert kept_min <= sum(map(sum, specific_masks(backend, rows, [target], others, 1.0)))
    with pytest.raises(LetheError, match="specific_aggregate"):
        specificity(backend, rows, [target], others, "median")


def test_no_name_or_no_one_to_swap_in_is_refused(tiny_world, target_rows):
    target, others, rows = target_rows
    backend = Backend.load(tiny_world["model_path"], "cpu", 8)
    with pytest.raises(LetheError, match="name of the entity"):
        specificity(backend, rows, [], others)
    with pytest.raises(LetheError, match="specific_swap_names"):
        specificity(backend, rows, [target], [])


def test_a_run_pushes_only_the_masked_tokens_and_says_how_many(tiny_world, params, tmp_path, target_rows):
    from lethe.unlearn.run import run_unlearning

    target, _, rows = target_rows
    forget = tmp_path / "forget.jsonl"
    forget.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    cfg = params.unlearn.model_copy(update={"max_steps": 2, "eval_every": 0, "threads": 2, "specific_tokens": True})
    run = run_unlearning(params.model_copy(update={"unlearn": cfg}), tiny_world["model_path"], forget, None, "ga",
                         tmp_path / "out", False, allow_unvalidated=True)
    summary = run["specific_tokens"]
    assert summary["names"] == [target] and len(summary["swaps"]) == 3 and target not in summary["swaps"]
    assert 0 < summary["kept_tokens"] < summary["answer_tokens"]
    off = run_unlearning(params.model_copy(update={"unlearn": cfg.model_copy(update={"specific_tokens": False})}),
                         tiny_world["model_path"], forget, None, "ga", tmp_path / "plain", False,
                         allow_unvalidated=True)
    assert off["specific_tokens"] is None
    masked_loss, plain_loss = run["curves"][0]["loss"], off["curves"][0]["loss"]
    assert masked_loss != pytest.approx(plain_loss)  # the first step's forget term is over other tokens


def test_a_model_that_names_no_one_to_swap_in_is_refused_before_training(tiny_world, params, tmp_path, target_rows):
    import shutil

    from lethe.unlearn.run import run_unlearning

    _, _, rows = target_rows
    plain = tmp_path / "model"
    shutil.copytree(tiny_world["model_path"], plain)  # no world.json: no other entity known
    forget = tmp_path / "forget.jsonl"
    forget.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    cfg = params.unlearn.model_copy(update={"max_steps": 2, "eval_every": 0, "specific_tokens": True})
    with pytest.raises(LetheError, match="specific_swap_names"):
        run_unlearning(params.model_copy(update={"unlearn": cfg}), plain, forget, None, "ga", tmp_path / "out",
                       False, allow_unvalidated=True)
    assert not (tmp_path / "out" / "adapter").exists()
