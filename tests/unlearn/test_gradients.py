"""Gradient shaping on terms whose gradients are known in closed form."""

import pytest
import torch

from lethe.errors import LetheError
from lethe.unlearn.gradients import DisruptionMask, balanced_backward, shaped_backward


class _KnownTerms:
    """forget = 0.5 |w - c|^2 (gradient w - c), retain = b.w (gradient b)."""

    needs_retain = True

    def __init__(self, c, b):
        self.c, self.b = c, b
        self.forget_calls = []

    def forget_term(self, model, forget):
        self.forget_calls.append(model.detach().clone())
        return 0.5 * ((model - self.c) ** 2).sum(), {}

    def terms(self, model, forget, retain):
        value, parts = self.forget_term(model, forget)
        return value, (self.b * model).sum(), parts


def test_balanced_backward_rescales_the_retain_gradient_to_the_forget_norm():
    w = torch.zeros(3, requires_grad=True)
    c, b = torch.tensor([-3.0, 0.0, -4.0]), torch.tensor([0.0, 600.0, 800.0])  # gradient norms 5 and 1000
    total, parts = balanced_backward(_KnownTerms(c, b), w, None, None, [w], retain_weight=0.5)
    assert parts["forget_grad_norm"] == pytest.approx(5.0) and parts["retain_grad_norm"] == pytest.approx(1000.0)
    assert parts["retain_scale"] == pytest.approx(0.5 * 5 / 1000)
    assert torch.allclose(w.grad, -c + b * (0.5 * 5 / 1000))  # retain part now has norm 2.5 = 0.5 x 5
    assert total.item() == pytest.approx(12.5)


def test_sharpness_aware_takes_the_forget_gradient_one_rho_step_uphill_and_restores_the_weights():
    w = torch.tensor([1.0, 2.0, 2.0], requires_grad=True)
    c, b = torch.zeros(3), torch.tensor([0.0, 1.0, 0.0])
    terms = _KnownTerms(c, b)
    total, parts = shaped_backward(terms, w, None, None, [w], sam_rho=0.3)
    g = torch.tensor([1.0, 2.0, 2.0])  # forget gradient at w (norm 3)
    assert torch.allclose(terms.forget_calls[1], w.detach() + 0.3 * g / 3)  # probed at the worst point
    assert torch.allclose(w.detach(), torch.tensor([1.0, 2.0, 2.0]))  # and put back exactly
    assert torch.allclose(w.grad, (w.detach() + 0.3 * g / 3 - c) + b)  # forget there + retain here, unscaled
    assert parts["sam_forget_term"] == pytest.approx(0.5 * (3.3 ** 2))
    assert total.item() == pytest.approx(4.5 + 2.0)


def test_sharpness_aware_with_a_zero_forget_gradient_is_the_plain_gradient():
    w = torch.zeros(2, requires_grad=True)
    terms = _KnownTerms(torch.zeros(2), torch.ones(2))
    shaped_backward(terms, w, None, None, [w], sam_rho=0.5)
    assert len(terms.forget_calls) == 1 and torch.allclose(w.grad, torch.ones(2))


class _TinyAdapted(torch.nn.Module):
    """A frozen base weight and a LoRA-like trainable offset: the merged weight is base + lora_b."""

    def __init__(self):
        super().__init__()
        self.base = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]), requires_grad=False)
        self.lora_b = torch.nn.Parameter(torch.zeros(3))


class _MergedTerms:
    """forget = 0.5 |base + lora_b - c|^2, no retain term."""

    needs_retain = False

    def __init__(self, c):
        self.c = c
        self.probed = []

    def forget_term(self, model, forget):
        self.probed.append(model.base.detach().clone())
        return 0.5 * ((model.base + model.lora_b - self.c) ** 2).sum(), {}

    def terms(self, model, forget, retain):
        value, parts = self.forget_term(model, forget)
        return value, None, parts


def test_sharpness_aware_in_model_space_moves_every_frozen_weight_by_rho_sign_and_puts_it_back():
    model, c = _TinyAdapted(), torch.tensor([0.0, 0.0, 1.0])
    terms = _MergedTerms(c)
    shaped_backward(terms, model, None, None, [model.lora_b], sam_rho=0.1, sam_space="model")
    base = torch.tensor([1.0, -2.0, 0.5])
    moved = base + 0.1 * torch.sign(base - c)  # the first Adam step of an attack that climbs the forget loss
    assert torch.allclose(terms.probed[-1], moved)
    assert torch.allclose(model.lora_b.grad, moved - c)  # the adapter's gradient taken there
    assert torch.equal(model.base.detach(), base) and not model.base.requires_grad and model.base.grad is None


def test_an_unknown_sharpness_aware_space_is_refused():
    from lethe.errors import LetheError

    model = _TinyAdapted()
    with pytest.raises(LetheError, match="unknown sharpness-aware space"):
        shaped_backward(_MergedTerms(torch.zeros(3)), model, None, None, [model.lora_b], sam_rho=0.1, sam_space="x")


class _AttackTerms(_MergedTerms):
    """forget = 0.5 |base + lora_b - c|^2; the attacker relearns toward `a`: 0.5 |base + lora_b - a|^2."""

    def __init__(self, c, a):
        super().__init__(c)
        self.a = a

    def attack_loss(self, model, batch):
        return 0.5 * ((model.base + model.lora_b - self.a) ** 2).sum()


def test_the_inner_attack_takes_the_forget_gradient_where_adamw_relearning_goes_and_puts_the_weights_back():
    from lethe.unlearn.gradients import InnerAttack

    model, c, a = _TinyAdapted(), torch.tensor([0.0, 0.0, 1.0]), torch.tensor([3.0, -3.0, 0.0])
    terms = _AttackTerms(c, a)
    lr = 0.1
    _, parts = shaped_backward(terms, model, None, None, [model.lora_b],
                               attack=InnerAttack(batch=None, steps=1, lr=lr, loss=terms.attack_loss))
    base = torch.tensor([1.0, -2.0, 0.5])
    # AdamW's first step: decoupled decay (0.01) then lr x sign of the attack's gradient (base - a)
    moved = base * (1 - lr * 0.01) - lr * torch.sign(base - a)
    assert torch.allclose(terms.probed[-1], moved, atol=1e-6)
    assert torch.allclose(model.lora_b.grad, moved - c, atol=1e-6)  # the adapter's forget gradient taken there
    assert torch.equal(model.base.detach(), base) and not model.base.requires_grad and model.base.grad is None
    assert parts["attack_loss_after"] < parts["attack_loss_before"]


def test_more_inner_attack_steps_relearn_more():
    from lethe.unlearn.gradients import InnerAttack

    after = {}
    for steps in (1, 5, 20):
        model = _TinyAdapted()
        terms = _AttackTerms(torch.zeros(3), torch.tensor([3.0, -3.0, 0.0]))
        _, parts = shaped_backward(terms, model, None, None, [model.lora_b],
                                   attack=InnerAttack(batch=None, steps=steps, lr=0.1, loss=terms.attack_loss))
        after[steps] = parts["attack_loss_after"]
        assert parts["attack_loss_before"] == pytest.approx(0.5 * (4 + 1 + 0.25))
    assert after[1] > after[5] > after[20]


def test_a_kept_attack_shift_moves_the_weights_as_the_attack_did_and_is_reused_after_the_adapter_moves():
    from lethe.unlearn.gradients import InnerAttack, relearning_shift

    model, c, a = _TinyAdapted(), torch.tensor([0.0, 0.0, 1.0]), torch.tensor([3.0, -3.0, 0.0])
    terms = _AttackTerms(c, a)
    attack = InnerAttack(batch=None, steps=3, lr=0.1, loss=terms.attack_loss)
    shaped_backward(terms, model, None, None, [model.lora_b], attack=attack)
    direct, attacked_at = model.lora_b.grad.clone(), terms.probed[-1].clone()
    model.lora_b.grad = None

    shift, parts = relearning_shift(model, attack)
    base = torch.tensor([1.0, -2.0, 0.5])
    assert torch.equal(model.base.detach(), base) and model.base.grad is None  # the attack is undone
    assert parts["attack_loss_after"] < parts["attack_loss_before"]
    assert torch.allclose(base + shift[0], attacked_at, atol=1e-6)
    shaped_backward(terms, model, None, None, [model.lora_b], attack_shift=shift)
    assert torch.allclose(model.lora_b.grad, direct, atol=1e-6)  # the same gradient as the attack itself gave

    with torch.no_grad():
        model.lora_b.add_(torch.tensor([0.5, 0.0, -0.5]))  # the adapter moves; the kept shift still applies
    model.lora_b.grad = None
    shaped_backward(terms, model, None, None, [model.lora_b], attack_shift=shift)
    assert torch.allclose(terms.probed[-1], attacked_at, atol=1e-6)  # the base moved where the attack took it
    assert torch.allclose(model.lora_b.grad, attacked_at + model.lora_b.detach() - c, atol=1e-6)
    assert torch.equal(model.base.detach(), base)


def test_an_attack_and_a_kept_shift_are_not_given_together():
    from lethe.unlearn.gradients import InnerAttack

    model = _TinyAdapted()
    terms = _AttackTerms(torch.zeros(3), torch.ones(3))
    with pytest.raises(LetheError, match="not both"):
        shaped_backward(terms, model, None, None, [model.lora_b], attack_shift=[torch.zeros(3)],
                        attack=InnerAttack(batch=None, steps=1, lr=0.1, loss=terms.attack_loss))
    with pytest.raises(LetheError, match="cannot move a model"):
        shaped_backward(terms, model, None, None, [model.lora_b], attack_shift=[torch.zeros(3), None])


def test_the_inner_attack_and_sharpness_aware_forgetting_are_not_combined():
    from lethe.errors import LetheError
    from lethe.unlearn.gradients import InnerAttack

    model = _TinyAdapted()
    terms = _AttackTerms(torch.zeros(3), torch.ones(3))
    with pytest.raises(LetheError, match="not both"):
        shaped_backward(terms, model, None, None, [model.lora_b], sam_rho=0.1,
                        attack=InnerAttack(batch=None, steps=1, lr=0.1, loss=terms.attack_loss))


def test_disruption_mask_keeps_the_forget_gradient_only_where_it_agrees_with_the_retain_gradient():
    w = torch.zeros(4, requires_grad=True)
    c, b = torch.tensor([-1.0, 2.0, -3.0, 0.0]), torch.tensor([5.0, 5.0, -1.0, 7.0])  # forget gradient w - c = -c
    mask = DisruptionMask(momentum=0.0)
    total, parts = shaped_backward(_KnownTerms(c, b), w, None, None, [w], disruption=mask)
    # -c = [1, -2, 3, 0]: coordinate 0 agrees with b, 1 and 2 disagree, 3 does not move
    assert torch.allclose(w.grad, torch.tensor([1.0, 0.0, 0.0, 0.0]) + b)
    assert parts["disruption_kept"] == pytest.approx(1 / 3) and parts["forget_grad_norm"] == pytest.approx(1.0)
    assert total.item() == pytest.approx(7.0 + 0.0)


def test_disruption_mask_averages_the_retain_gradient_and_round_trips_its_state():
    mask = DisruptionMask(momentum=0.9)
    mask.observe([torch.tensor([1.0, -1.0]), None])
    mask.observe([torch.tensor([-5.0, -1.0]), torch.tensor([2.0])])
    assert torch.allclose(mask.average[0], torch.tensor([0.9 - 0.5, -1.0]))  # 0.9 x first + 0.1 x second
    assert torch.equal(mask.average[1], torch.tensor([2.0]))  # a weight first reached later starts there
    masked, kept = mask.apply([torch.tensor([3.0, 3.0]), torch.tensor([-1.0])])
    assert torch.equal(masked[0], torch.tensor([3.0, 0.0])) and torch.equal(masked[1], torch.tensor([-0.0]))
    assert kept == pytest.approx(1 / 3)
    resumed = DisruptionMask(momentum=0.5)
    resumed.load_state_dict(mask.state_dict())
    assert resumed.momentum == 0.9 and torch.equal(resumed.average[0], mask.average[0])


def test_disruption_mask_without_a_retain_gradient_is_refused():
    with pytest.raises(LetheError, match="needs a retain gradient"):
        DisruptionMask(0.9).apply([torch.ones(2)])
    with pytest.raises(LetheError, match="momentum"):
        DisruptionMask(1.0)
