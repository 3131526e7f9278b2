"""LoRA targets per architecture: every projection by default, never the head, clear errors otherwise."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM

from lethe.errors import LetheError
from lethe.llm.layers import adaptable_layers, uses_conv1d
from lethe.unlearn.targets import resolve_targets
from tests.architectures import EXPECTED_TARGETS, config_for


def _model(kind: str, tie: bool = True):
    config = config_for(kind, 64, {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0})
    config.tie_word_embeddings = tie
    return AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("kind", sorted(EXPECTED_TARGETS))
def test_auto_targets_every_projection_of_the_family(kind):
    model = _model(kind)
    assert set(resolve_targets(model, "auto")) == EXPECTED_TARGETS[kind]
    assert uses_conv1d(model, resolve_targets(model, "auto")) == (kind == "gpt2")


def test_the_output_head_is_never_adaptable_even_untied():
    model = _model("llama", tie=False)
    assert "lm_head" not in adaptable_layers(model)
    with pytest.raises(LetheError, match=r"\['lm_head'\] do not exist in this llama model"):
        resolve_targets(model, ["q_proj", "lm_head"])


def test_an_override_is_kept_as_given_and_checked():
    model = _model("phi3")
    assert resolve_targets(model, ["qkv_proj"]) == ["qkv_proj"]
    with pytest.raises(LetheError, match=r"projection layers are \['down_proj', 'gate_up_proj', 'o_proj', "
                                          r"'qkv_proj'\] \(or set unlearn.lora.target_modules: auto\)"):
        resolve_targets(model, ["q_proj", "v_proj"])


def test_target_names_are_checked_on_the_skeleton_without_weights(tmp_path):
    from lethe.unlearn.targets import check_targets
    from tests.architectures import build_tiny_model

    path = build_tiny_model("llama", tmp_path / "llama", chat=False)
    assert "q_proj" in check_targets(path, "auto")
    (path / "model.safetensors").unlink()  # no weights needed for the check
    with pytest.raises(LetheError, match=r"\['nope_proj'\] do not exist"):
        check_targets(path, ["nope_proj"])
