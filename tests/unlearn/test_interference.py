"""First-order interference of a forget step with each entity's rows."""

import pytest
import torch

from lethe.data import author_qa, load_authors
from lethe.errors import LetheError
from lethe.unlearn.interference import forget_interference, nll_gradient


def test_the_forget_rows_themselves_interfere_by_their_gradient_norm_and_nothing_is_changed(tiny_backend,
                                                                                             tiny_world):
    target = tiny_world["authors"][-1]["name"]
    forget = [(qa.question, qa.answer) for qa in author_qa(load_authors().index(target))[:4]]
    other = [(qa.question, qa.answer) for qa in author_qa(0)[:4]]
    before = [p.detach().clone() for p in tiny_backend.model.parameters()]
    flags = [p.requires_grad for p in tiny_backend.model.parameters()]
    risk = forget_interference(tiny_backend, forget, {"itself": forget, "other": other, "none": []}, batch_size=3)
    assert set(risk) == {"itself", "other"}
    forget_norm = nll_gradient(tiny_backend, forget, 3).norm().item()
    assert risk["itself"] == pytest.approx(forget_norm, rel=1e-4)  # <g, g> / |g| = |g|
    assert abs(risk["other"]) <= nll_gradient(tiny_backend, other, 3).norm().item() * (1 + 1e-4)  # Cauchy-Schwarz
    assert risk["other"] != pytest.approx(risk["itself"])
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_backend.model.parameters()))
    assert [p.requires_grad for p in tiny_backend.model.parameters()] == flags
    assert all(p.grad is None for p in tiny_backend.model.parameters())
    with pytest.raises(LetheError, match="forget rows"):
        forget_interference(tiny_backend, [], {"other": other})
