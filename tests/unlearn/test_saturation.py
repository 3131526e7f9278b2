"""When a bounded forget objective stops pushing (lethe.unlearn.saturation): hand-made curves, and the
factor NPO and SimNPO really record on a tiny random Llama."""

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from lethe.config import NpoConfig, SimNpoConfig
from lethe.unlearn.methods import get_method
from lethe.unlearn.saturation import GRAD_SCALE, describe, saturation
from tests.unlearn.test_every_method import FORGET, _batch, tiny_model  # noqa: F401 (fixture)


def _curves(scales, nll=None):
    return [{"step": i + 1, GRAD_SCALE: s, **({"forget_nll": nll[i]} if nll else {})} for i, s in enumerate(scales)]


def test_the_first_step_of_a_run_of_spent_steps_is_reported_with_what_the_dev_probes_kept():
    scales = [1.0, 0.5, 0.005, 0.2, 0.009, 0.004, 0.003, 0.002, 0.001, 0.001]
    nll = [3.0 + i for i in range(10)]
    path = [{"step": 0, "dev_rouge": 0.4}, {"step": 5, "dev_rouge": 0.3, "dev_ratio": 0.75},
            {"step": 10, "dev_rouge": 0.26, "dev_ratio": 0.65}]
    sat = saturation(_curves(scales, nll), path, below=0.01, window=5)
    # step 3's dip is followed by a push (0.2): the run that counts starts at step 5
    assert sat == {"step": 5, GRAD_SCALE: 0.009, "forget_nll": 7.0, "dev_ratio": 0.75, "dev_ratio_last": 0.65,
                   "steps": 10}
    note = describe(sat, budget_met=False)
    assert "step 5 of 10" in note and "NLL 7.0" in note and "0.65x" in note and "beta" in note


def test_no_report_when_the_term_kept_pushing_or_records_no_factor_or_the_target_was_met():
    assert saturation(_curves([1.0, 0.005, 0.005, 0.005, 0.005, 0.5]), window=5) is None  # four spent steps
    assert saturation([{"step": 1, "forget_nll": 2.0}, {"step": 2, "forget_nll": 9.0}]) is None  # GA: none
    sat = saturation(_curves([0.001] * 6), window=5)
    assert sat["step"] == 1 and sat["dev_ratio"] is None  # a fixed budget: no dev probes to quote
    assert describe(sat, budget_met=True) is None and describe(None, budget_met=False) is None
    assert "dev probes" not in describe(sat, budget_met=False)


def _model(path):
    torch.manual_seed(0)
    return get_peft_model(AutoModelForCausalLM.from_pretrained(path),
                          LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))


@pytest.mark.parametrize("name,config", [("npo", NpoConfig(beta=0.5)), ("simnpo", SimNpoConfig(beta=0.05))])
def test_the_bounded_objectives_record_a_factor_that_starts_near_one_and_falls_as_the_rows_become_unlikely(
        name, config, tiny_model):  # noqa: F811 (fixture)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model, forget = _model(tiny_model), _batch(tokenizer, FORGET[:1])
    method = get_method(name, config)
    _, parts = method.forget_term(model, forget)
    if name == "npo":  # the adapter starts at zero: the model is its reference, log-ratio 0, factor 2 sigmoid(0)
        assert parts[GRAD_SCALE] == pytest.approx(1.0, abs=1e-4)
    start = parts[GRAD_SCALE]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    for _ in range(40):  # plain ascent on the row's NLL, much faster than the bounded term itself
        optimizer.zero_grad()
        (-model(**forget).loss).backward()
        optimizer.step()
    _, parts = method.forget_term(model, forget)
    # one row: the factor is exactly 2 sigmoid(beta * log-ratio) (NPO), 2 sigmoid(gamma - beta * NLL) (SimNPO)
    exponent = 0.5 * parts["log_ratio"] if name == "npo" else -0.05 * parts["forget_nll"]
    assert parts[GRAD_SCALE] == pytest.approx(2 / (1 + math.exp(-exponent)), rel=1e-4)
    assert parts[GRAD_SCALE] < (0.5 * start if name == "npo" else start)  # SimNPO: the mean NLL rose less
