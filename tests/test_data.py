from lethe.data import (
    author_qa,
    load_authors,
    load_full,
    load_general,
    load_holdout,
    load_perturbed,
    parse_author_spec,
    split_author_indices,
)
from lethe.errors import LetheError

import pytest


def test_full_has_200_authors_of_20_rows():
    rows = load_full()
    assert len(rows) == 4000
    assert {r.author_index for r in rows} == set(range(200))
    assert all(r.author_index == i // 20 for i, r in enumerate(rows))


def test_authors_match_full():
    names = load_authors()
    assert len(names) == 200 and names[88] is None
    assert author_qa(198)[0].author == names[198] == "Basil Mahfouz Al-Kuwaiti"


@pytest.mark.parametrize("split,count,first", [("forget01", 40, 198), ("forget05", 200, 190), ("forget10", 400, 180)])
def test_forget_splits_align_with_full(split, count, first):
    rows = load_perturbed(split)
    assert len(rows) == count
    assert rows[0].author_index == first and rows[-1].author_index == 199
    assert split_author_indices(split)[0] == first
    full_answers = {qa.answer for qa in author_qa(first)}
    assert rows[0].answer in full_answers
    assert len(rows[0].perturbed_answers) == 5 and rows[0].paraphrased_answer


def test_retain_and_general_splits():
    retain = load_perturbed("retain")
    assert len(retain) == 400 and retain[-1].author_index == 19
    assert len(load_perturbed("real_authors")) == 100 and load_perturbed("real_authors")[0].author_index is None
    assert len(load_perturbed("world_facts")) == 117
    assert len(load_general("world_facts")) == 117 and len(load_general("real_authors")) == 100


def test_holdout_authors_are_not_trained():
    trained = {qa.question for qa in load_full()}
    for split, count in (("holdout01", 40), ("holdout05", 200), ("holdout10", 400)):
        rows = load_holdout(split)
        assert len(rows) == count
        assert not trained & {qa.question for qa in rows}


def test_author_spec_parsing():
    assert parse_author_spec("0-2, 198-199") == [0, 1, 2, 198, 199]
    with pytest.raises(LetheError, match="outside"):
        parse_author_spec("195-205")
    with pytest.raises(LetheError, match="no name"):
        parse_author_spec("88")
    with pytest.raises(LetheError, match="bad author range"):
        parse_author_spec("a-b")


def test_unknown_split_is_a_clear_error():
    with pytest.raises(LetheError, match="unknown"):
        load_perturbed("forget99")
