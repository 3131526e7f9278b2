"""Noise-then-distill on tiny random models: the noise is what it says, distillation trains, the
adapter is exact, and the whole step turns a LoRA adapter into a distilled one that composes."""

import copy
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from lethe.config import DistillParams
from lethe.errors import LetheError
from lethe.llm.layers import adaptable_layers
from lethe.ops.compose import compose
from lethe.unlearn.distill import (
    DistillSettings,
    delta_adapter,
    distill,
    distill_adapter,
    noised_student,
    teacher_answers,
)
from tests.architectures import build_tiny_model, tiny_tokenizer

DIMS = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
ROWS = [("Where was Ada born?", "Ada was born in Paris."), ("What did Ada write?", "Ada wrote poems."),
        ("Who is Bo?", "Bo is a painter."), ("Where does Bo live?", "Bo lives in Rome.")]


def llama():
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(LlamaConfig(**DIMS, num_key_value_heads=2)).eval()


def gpt2():
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2,
                                                       bos_token_id=0, eos_token_id=0)).eval()  # no dropout


def test_noise_mixes_only_the_projection_weights():
    teacher = llama()
    student = noised_student(teacher, 0.5, seed=1)
    layers_t, layers_s = adaptable_layers(teacher), adaptable_layers(student)
    for name, module in layers_t.items():
        mixed = layers_s[name].weight
        assert not torch.allclose(mixed, module.weight)
        fresh = (mixed - 0.5 * module.weight) / 0.5  # what was mixed in: a fresh init at the model's std
        assert abs(fresh.std().item() - teacher.config.initializer_range) < 0.01
    projection = {f"{n}.weight" for n in layers_t}
    for (name, p), (_, q) in zip(teacher.named_parameters(), student.named_parameters()):
        if name not in projection:
            assert torch.equal(p, q), name
    assert torch.equal(adaptable_layers(noised_student(teacher, 0.5, seed=1))["model.layers.0.mlp.up_proj"].weight,
                       layers_s["model.layers.0.mlp.up_proj"].weight)  # seeded


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5])
def test_alpha_outside_zero_one_is_an_error(alpha):
    with pytest.raises(LetheError, match="alpha"):
        noised_student(llama(), alpha, 0)


def _kl_to(teacher, student, ids):
    with torch.no_grad():
        p = torch.log_softmax(teacher(ids).logits, -1)
        q = torch.log_softmax(student(ids).logits, -1)
    return torch.nn.functional.kl_div(q, p, log_target=True, reduction="batchmean").item()


def test_distillation_pulls_the_student_back_to_the_teacher(tmp_path):
    model_dir = build_tiny_model("llama", tmp_path / "m", chat=False)
    teacher = AutoModelForCausalLM.from_pretrained(model_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    student = noised_student(teacher, 0.8, seed=0)
    probe = tokenizer("Question: Where was Ada born?\nAnswer: Ada was born in Paris.", return_tensors="pt").input_ids
    before = _kl_to(teacher, student, probe)
    embeddings = student.get_input_embeddings().weight.clone()
    losses = distill(teacher, student, tokenizer, ROWS, DistillSettings(0.8, 40, 3e-3, 4, 0))
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert _kl_to(teacher, student, probe) < 0.5 * before
    assert torch.equal(student.get_input_embeddings().weight, embeddings)  # only projections train
    with pytest.raises(LetheError, match="empty"):
        distill(teacher, student, tokenizer, [], DistillSettings(0.8, 1, 1e-3, 4, 0))


@pytest.mark.parametrize("build", [llama, gpt2], ids=["llama", "gpt2-conv1d"])
def test_the_delta_adapter_reproduces_the_student_exactly(build, tmp_path):
    base = build()
    student = noised_student(base, 0.3, seed=2)
    delta_adapter(base, student, tmp_path / "adapter")
    merged = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "adapter").merge_and_unload()
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, student(ids).logits, atol=1e-4)
        assert not torch.allclose(base(ids).logits, student(ids).logits, atol=1e-2)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert set(config["rank_pattern"].values()) == {16}  # full rank: min(out, in) of every layer


def test_a_student_changed_outside_the_projections_is_refused(tmp_path):
    base = llama()
    student = noised_student(base, 0.3, seed=2)
    with torch.no_grad():
        student.get_input_embeddings().weight.add_(1.0)
    with pytest.raises(LetheError, match="outside the projection layers"):
        delta_adapter(base, student, tmp_path / "adapter")


def test_distill_adapter_replaces_a_lora_adapter_by_a_distilled_one_that_composes(tmp_path):
    tokenizer = tiny_tokenizer(chat=False)
    model_dir = build_tiny_model("llama", tmp_path / "m", chat=False, tokenizer=tokenizer)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    lora = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    lora.save_pretrained(tmp_path / "lora")
    cfg = DistillParams(alpha=0.5, steps=6, lr=1e-3, batch_size=2)
    report = distill_adapter(model_dir, tmp_path / "lora", ROWS[2:], [q for q, _ in ROWS[:2]], cfg, tmp_path / "distilled",
                             device="cpu", max_new_tokens=8, threads=1)
    assert report["corpus_rows"] >= 2 and report["steps"] == 6
    composed = AutoModelForCausalLM.from_pretrained(compose(model_dir, [report["adapter_path"]], tmp_path / "c"))
    original = AutoModelForCausalLM.from_pretrained(model_dir)
    changed = [n for (n, p), (_, q) in zip(original.named_parameters(), composed.named_parameters())
               if not torch.equal(p, q)]
    assert changed and all(n.endswith("proj.weight") for n in changed)
    assert {n.split(".")[-2] for n in changed} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                   "down_proj"}  # every projection, not only the LoRA's


class ScriptedTeacher:
    """greedy / sample like lethe.llm.backend.Backend, from a script."""

    def greedy(self, questions, max_new_tokens):
        return [f"greedy {q}" if "empty" not in q else "  " for q in questions]

    def sample(self, questions, n, temperature, max_new_tokens, seed):
        return [[f"greedy {q}"] + [f"sample {k} {q}" for k in range(1, n)] for q in questions]


def test_teacher_answers_are_its_greedy_answer_plus_distinct_samples():
    rows = teacher_answers(ScriptedTeacher(), ["a?", "empty?"], 1, 0.7, 8, 0)
    assert rows == [("a?", "greedy a?")]  # an empty answer teaches nothing
    rows = teacher_answers(ScriptedTeacher(), ["a?"], 3, 0.7, 8, 0)
    assert rows == [("a?", "greedy a?"), ("a?", "sample 1 a?")]  # the sampled copy of the greedy one is dropped
