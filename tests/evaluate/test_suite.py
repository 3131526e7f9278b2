"""The suite's reading of a world record: which model never knew an entity."""

import shutil

from lethe.data import author_qa
from lethe.evaluate.suite import never_trained_reference


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
