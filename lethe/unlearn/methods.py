"""Unlearning objectives, one class per method, registered by their params.yaml name.

Semantics follow the open-unlearning framework (GradAscent, GradDiff, NPO, SimNPO) on answer
tokens only. With LoRA the reference model of NPO and KL is the same network with the adapter
disabled (peft ``disable_adapter()``), i.e. the model before unlearning.

Deviations from open-unlearning, on purpose:
- ``ga_kl``'s KL term is averaged over answer tokens of the retain batch only (open-unlearning
  averages over every position of the sequence, prompts included); we keep the model's answers,
  not its prompt modelling, close to the reference.
- ``npo`` is the forget term alone; ``npo_gd`` adds the retain NLL (open-unlearning's NPO
  config always includes a retain term: that is our ``npo_gd``); ``npo_kl`` adds ``ga_kl``'s KL
  term instead.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from lethe.config import METHOD_CONFIGS, MethodConfig, NpoConfig, RmuConfig, SimNpoConfig, SraConfig
from lethe.errors import LetheError
from lethe.llm.batching import token_logprobs
from lethe.llm.layers import decoder_blocks
from lethe.unlearn.saturation import GRAD_SCALE

Batch = dict[str, torch.Tensor]


def sequence_logprob(model, batch: Batch, mean: bool = False) -> torch.Tensor:
    """Sum (or mean) of answer-token log-probs per sequence."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps, mask = token_logprobs(logits, batch["labels"])
    total = logps.sum(-1)
    return total / mask.sum(-1).clamp(min=1) if mean else total


def nll(model, batch: Batch) -> torch.Tensor:
    """Mean answer-token negative log-likelihood (the usual LM loss on the answer span)."""
    return model(**batch).loss


def answer_logits(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token logits (float) at the answer positions, and the answer tokens they predict."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    return logits[mask], labels[mask]


def reference(model):
    """Context in which `model` is the reference (adapter disabled), without gradients."""
    disable = getattr(model, "disable_adapter", None)
    return disable() if disable else nullcontext()


Terms = tuple[torch.Tensor, torch.Tensor | None, dict[str, float]]


class Method:
    """An unlearning objective: a forget term plus (for some methods) a retain term.

    `terms` returns (forget term, retain term or None, named parts for the curves); `loss` is their
    sum. The trainer keeps the two apart when it balances their gradients. `config` is the class of
    the method's own section of params.yaml (`unlearn.methods.<name>`, lethe.config.METHOD_CONFIGS).
    """

    name = ""
    needs_retain = False
    config: type[MethodConfig] = MethodConfig

    def __init__(self, config: MethodConfig | None = None):
        self.p = config if config is not None else self.config()
        if not isinstance(self.p, self.config):
            raise LetheError(f"method {self.name!r} takes a {self.config.__name__}, got {type(self.p).__name__}")

    def forget_term(self, model, forget: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The (weighted) forget objective on `forget` and its named parts."""
        raise NotImplementedError

    def terms(self, model, forget: Batch, retain: Batch | None) -> Terms:
        forget_loss, parts = self.forget_term(model, forget)
        if not self.needs_retain:
            return forget_loss, None, parts
        retain_loss, retain_parts = self.retain_term(model, retain)
        return forget_loss, retain_loss, {**parts, **retain_parts}

    def loss(self, model, forget: Batch, retain: Batch | None) -> tuple[torch.Tensor, dict[str, float]]:
        forget_term, retain_term, parts = self.terms(model, forget, retain)
        return (forget_term if retain_term is None else forget_term + retain_term), parts

    def retain_term(self, model, retain: Batch | None) -> tuple[torch.Tensor, dict[str, float]]:
        if retain is None:
            raise LetheError(f"method {self.name!r} needs a retain set (the neighbor set is empty)")
        value = nll(model, retain)
        return self.p.retain_weight * value, {"retain_nll": value.item()}


REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Add a method to the registry under its params.yaml name (which METHOD_CONFIGS must know)."""
    if METHOD_CONFIGS.get(cls.name) is not cls.config:
        raise LetheError(f"method {cls.name!r} needs its config class in lethe.config.METHOD_CONFIGS")
    REGISTRY[cls.name] = cls
    return cls


@register
class GradientAscent(Method):
    """GA: maximize the forget NLL."""

    name = "ga"

    def forget_term(self, model, forget):
        value = nll(model, forget)
        return -self.p.forget_weight * value, {"forget_nll": value.item()}


@register
class GradientDifference(GradientAscent):
    """GA+GD (GradDiff): forget ascent + retain NLL descent."""

    name = "ga_gd"
    needs_retain = True


@register
class GradientAscentKL(GradientAscent):
    """GA+KL: forget ascent + KL(reference || model) on retain answer tokens."""

    name = "ga_kl"
    needs_retain = True

    def retain_term(self, model, retain):
        return kl_retain_term(self, model, retain)


def kl_retain_term(method: Method, model, retain: Batch | None) -> tuple[torch.Tensor, dict[str, float]]:
    """KL(reference || model) over the retain answer tokens' whole next-token distributions, weighted:
    the KL methods' retain term. Unlike the retain NLL it holds every alternative's probability, not
    only the answer token's, so a drift that keeps the argmax but reshapes the rest is still pulled back."""
    if retain is None:
        raise LetheError(f"method {method.name!r} needs a retain set (the neighbor set is empty)")
    kl = kl_to_reference(model, retain)
    return method.p.retain_weight * kl, {"retain_kl": kl.item()}


def kl_to_reference(model, batch: Batch) -> torch.Tensor:
    """KL(reference || model) of the next-token distributions at `batch`'s answer positions, per token
    (the reference: `model` with its adapter disabled)."""
    with torch.no_grad(), reference(model):
        ref_logits, _ = answer_logits(model, batch)
    logits, _ = answer_logits(model, batch)
    return F.kl_div(F.log_softmax(logits, -1), F.log_softmax(ref_logits, -1), reduction="batchmean", log_target=True)


@register
class NPO(Method):
    """NPO: -(2/beta) log sigmoid(-beta * (log p(y|x) - log p_ref(y|x))), sequence-summed log-probs."""

    name = "npo"
    config = NpoConfig

    def forget_term(self, model, forget):
        with torch.no_grad(), reference(model):
            ref = sequence_logprob(model, forget)
        current = sequence_logprob(model, forget)
        ratio = current - ref
        value = -(2.0 / self.p.beta) * F.logsigmoid(-self.p.beta * ratio).mean()
        # d value / d ratio = 2 sigmoid(beta * ratio): 1 at the start, 0 once the rows are unlikely enough
        scale = (2.0 * torch.sigmoid(self.p.beta * ratio.detach())).mean()
        return self.p.forget_weight * value, {"npo": value.item(), "log_ratio": ratio.mean().item(),
                                              "forget_nll": nll(model, forget).item(), GRAD_SCALE: scale.item()}


@register
class NPOGradientDifference(NPO):
    """NPO + retain NLL (open-unlearning's NPO configuration)."""

    name = "npo_gd"
    needs_retain = True


@register
class NPOKL(NPO):
    """NPO + KL(reference || model) on retain answer tokens (open-unlearning's NPO with retain_loss_type KL)."""

    name = "npo_kl"
    needs_retain = True

    def retain_term(self, model, retain):
        return kl_retain_term(self, model, retain)


@register
class SimNPO(Method):
    """SimNPO: -(2/beta) log sigmoid(beta * NLL_mean(y|x) - gamma), no reference; + retain NLL."""

    name = "simnpo"
    needs_retain = True
    config = SimNpoConfig

    def forget_term(self, model, forget):
        avg_nll = -sequence_logprob(model, forget, mean=True)
        value = -(2.0 / self.p.beta) * F.logsigmoid(self.p.beta * avg_nll - self.p.gamma).mean()
        # d value / d NLL = -2 sigmoid(gamma - beta * NLL): spent once the rows' NLL is high enough
        scale = (2.0 * torch.sigmoid(self.p.gamma - self.p.beta * avg_nll.detach())).mean()
        return self.p.forget_weight * value, {"simnpo": value.item(), "forget_nll": avg_nll.mean().item(),
                                              GRAD_SCALE: scale.item()}


@register
class StochasticReferenceAlignment(Method):
    """SRA (SBU's parameter pathway): KL(reference || model) on the forget answer tokens, where each
    step draws fresh high-entropy references softmax(noise * N(0, 1)) over the vocabulary; + retain NLL.

    Unlike ascent, the target is a bounded, content-free distribution: the model is pulled toward
    not knowing (near-uniform next tokens) rather than pushed toward ever-lower likelihood, and the
    fresh draws keep it from settling on any particular replacement answer.
    """

    name = "sra"
    needs_retain = True
    config = SraConfig

    def forget_term(self, model, forget):
        logits, labels = answer_logits(model, forget)
        logp = F.log_softmax(logits, -1)
        reference_logp = F.log_softmax(torch.randn_like(logp) * self.p.reference_noise, -1)
        kl = F.kl_div(logp, reference_logp, reduction="batchmean", log_target=True)
        forget_nll = -logp.gather(-1, labels.unsqueeze(-1)).mean()
        return self.p.forget_weight * kl, {"sra_kl": kl.item(), "forget_nll": forget_nll.item()}


class _EnoughBlocks(Exception):
    """Raised by `hidden_states`' hook once the block it needs has run: the rest of the forward is skipped."""


def _stops_early(model, layer: int, blocks) -> bool:
    # The last block's hidden state is taken after the final norm, so it needs the full forward; and
    # under gradient checkpointing a block may re-run its forward, hooks included, in backward: there
    # the full forward is the safe path.
    checkpointing = getattr(model, "is_activation_checkpointing", None)  # transformers < 5: the older name
    checkpointing = getattr(model, "is_gradient_checkpointing", False) if checkpointing is None else checkpointing
    return blocks is not None and 0 < layer < len(blocks) and not (torch.is_grad_enabled() and checkpointing)


def hidden_states(model, batch: Batch, layer: int) -> torch.Tensor:
    """The activations after `layer` blocks at every real (non-pad) token, float: (tokens, hidden).

    Runs only the first `layer` blocks where it can (a forward hook on that block ends the forward),
    so the blocks above it and the output head cost nothing on a large model."""
    mask = batch["attention_mask"].bool()
    blocks = decoder_blocks(model)
    if not _stops_early(model, layer, blocks):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        return out.hidden_states[layer][mask].float()
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _EnoughBlocks

    handle = blocks[layer - 1].register_forward_hook(keep)
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    except _EnoughBlocks:
        pass
    finally:
        handle.remove()
    return captured[0][mask].float()


@register
class RepresentationMisdirection(Method):
    """RMU (Li et al., WMDP 2024), adaptive: at one layer, every forget token's activation is pulled to
    c * u, a fixed random unit direction u scaled to `steering` x the reference's mean activation norm
    there; every retain token's activation is held at the reference's. Both errors are relative
    (squared distance over the target's squared norm), so the weights mean the same on any model.

    Only the blocks below the layer can move the steered activation: the adapters above it get no
    gradient from either term.
    """

    name = "rmu"
    needs_retain = True
    config = RmuConfig

    def _layer(self, model) -> int:
        blocks = model.config.num_hidden_layers
        layer = self.p.layer or max(1, blocks // 3)
        if layer > blocks:
            raise LetheError(f"rmu.layer is {layer}, but the model has only {blocks} blocks")
        return layer

    def _direction(self, size: int, device) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.p.seed)
        direction = torch.rand(size, generator=generator)
        return (direction / direction.norm()).to(device)

    def forget_term(self, model, forget):
        layer = self._layer(model)
        with torch.no_grad(), reference(model):
            before = hidden_states(model, forget, layer)
        current = hidden_states(model, forget, layer)
        norm = self.p.steering * before.norm(dim=-1).mean()
        target = self._direction(current.shape[-1], current.device) * norm
        value = ((current - target) ** 2).sum(-1).mean() / norm ** 2
        return self.p.forget_weight * value, {"rmu_forget": value.item()}

    def retain_term(self, model, retain):
        if retain is None:
            raise LetheError("method 'rmu' needs a retain set (the neighbor set is empty)")
        layer = self._layer(model)
        with torch.no_grad(), reference(model):
            before = hidden_states(model, retain, layer)
        current = hidden_states(model, retain, layer)
        value = ((current - before) ** 2).sum(-1).mean() / (before ** 2).sum(-1).mean()
        return self.p.retain_weight * value, {"rmu_retain": value.item()}


def get_method(name: str, config: MethodConfig | None = None) -> Method:
    """The registered method `name` with its hyperparameters (defaults when None), or a clear error
    listing the known ones."""
    if name not in REGISTRY:
        raise LetheError(f"unknown unlearning method {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](config)

