"""The audit: is the entity gone, or only hidden? Evidence that never comes from the training data.

Every measure here works on a plain (merged) model and the request's mining folder:

- held-out probes   ROUGE-L recall on the audit part of the MAGE supervision (nodes the unlearning
                    never trained on; lethe.supervision.heldout); and of the same answers, the share
                    of each probe's facts stated and of probes stated (`stated_facts`): before
                    unlearning, how many probes test a memory the model says at all
- re-elicitation    MAGE's elicitation again, fresh seed: the strength-weighted share of the
                    pre-unlearning graph's strong memories that come back (s' >= tau). Corpus-free and
                    oracle-free: it works for any entity and any model.
- relearning attack a few fine-tuning steps (every parameter, or a LoRA for large models) on a few
                    training forget rows, then the held-out probes again: knowledge that was only
                    suppressed comes back
- quantization      weights rounded to 8 bits (row-wise absmax, as LLM.int8) and 4 bits
                    (blockwise NF4, as bitsandbytes) and the held-out probes again: a small update
                    rounds away (arXiv 2410.16454)
- privleak          MUSE's relative MIA gap against a never-trained reference (open-unlearning's
                    formula): (s - r) / r * 100 with s, r = 1 - min-k AUC; 0 is ideal, about -100
                    means still memorized

Where a model that never knew the entity exists (the world's retain model, for its forget
authors), every measure is also taken on it: the floor a reader compares against.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import torch

from lethe.config import AuditParams, Params
from lethe.errors import LetheError
from lethe.evaluate import metrics as M
from lethe.llm.backend import Backend
from lethe.llm.batching import collate_qa
from lethe.rouge import novel_recall, rouge_l_recall, stopword_tokens, tokens

Pairs = Sequence[tuple[str, str]]
ROUNDED = {(8, "heldout"): M.Q8_HELDOUT_ROUGE, (4, "heldout"): M.Q4_HELDOUT_ROUGE,
           (8, "gold"): M.Q8_GOLD_ROUGE, (4, "gold"): M.Q4_GOLD_ROUGE}

# The 16 NF4 levels of QLoRA / bitsandbytes (quantiles of N(0, 1), scaled to [-1, 1]).
NF4_LEVELS = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
              -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
              0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
              0.7229568362236023, 1.0)


def recall(backend: Backend, pairs: Pairs, max_new_tokens: int) -> float | None:
    """Mean ROUGE-L recall of the greedy answers (None without pairs)."""
    each = recall_each(backend, pairs, max_new_tokens)
    return sum(each) / len(each) if each else None


def recall_each(backend: Backend, pairs: Pairs, max_new_tokens: int) -> list[float]:
    """ROUGE-L recall of the greedy answer to each pair, in order."""
    return answered(backend, pairs, max_new_tokens)[1]


def answered(backend: Backend, pairs: Pairs, max_new_tokens: int) -> tuple[list[str], list[float]]:
    """(the greedy answer to each pair, its ROUGE-L recall), in order."""
    if not pairs:
        return [], []
    answers = backend.greedy([q for q, _ in pairs], max_new_tokens)
    return answers, [rouge_l_recall(answer, reference) for answer, (_, reference) in zip(answers, pairs)]


def novel_each(answers: Sequence[str], pairs: Pairs, attack: Pairs) -> list[float | None]:
    """Per probe, the share of its reference answer's facts that neither the attack's rows nor the probe's
    question contain, found in the answer (lethe.rouge.novel_recall): what a relearning attack brought
    back that the attacker did not hand over. Facts as in `fact_share`: function words are none (any
    fluent answer has "the", "at", "as"; the "s" of "author's" was once a probe's only new token, so a
    stray possessive read as a fact recovered whole). None for a probe whose every fact was handed over."""
    given = {token for question, answer in attack for token in tokens(f"{question} {answer}")} | stopword_tokens()
    return [novel_recall(answer, reference, given | set(tokens(question)))
            for answer, (question, reference) in zip(answers, pairs)]


def fact_recall(backend: Backend, pairs: Pairs, max_new_tokens: int) -> float | None:
    """Mean share of each answer's facts, its tokens that neither the question holds nor are function
    words (lethe.rouge.STOPWORDS), found in the greedy answer (lethe.rouge.novel_recall). Unlike ROUGE-L
    it gives no credit for repeating the question ("Hina Ameen was born in ...") nor for the "the", "of"
    and "was" any fluent answer has. None without a pair that has such a token."""
    answers = backend.greedy([q for q, _ in pairs], max_new_tokens) if pairs else []
    return mean_known([fact_share(answer, question, reference)
                       for answer, (question, reference) in zip(answers, pairs)])


def fact_share(answer: str, question: str, reference: str) -> float | None:
    """The share of the reference answer's facts found in `answer`: its tokens that neither the question
    holds nor are function words (lethe.rouge.novel_recall). None when the reference has no such token."""
    return novel_recall(answer, reference, set(tokens(question)) | stopword_tokens())


def stated_facts(answers: Sequence[str], pairs: Pairs, min_share: float) -> tuple[float | None, float | None]:
    """(mean fact share, share of probes whose answer states at least `min_share` of their facts) over the
    probes with a fact; (None, None) without one. Before unlearning, the second says how many probes test
    a memory the model says at all: a probe sampled from its elicitation that its greedy answer does not
    repeat cannot show that memory go."""
    shares = [s for s in (fact_share(a, q, r) for a, (q, r) in zip(answers, pairs)) if s is not None]
    if not shares:
        return None, None
    return sum(shares) / len(shares), sum(s >= min_share for s in shares) / len(shares)


def mean_known(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not None (None when none is)."""
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


# -- re-elicitation -------------------------------------------------------------------------------
def audited_graph(graph_file: Path, model: str | Path, anchor: str, params: Params) -> nx.DiGraph:
    """The memory graph mined for `anchor`, as re-elicitation scores it: without its nodes that are
    another entity the model must keep (lethe.supervision.synthesize.other_entity_nodes, of the entities
    lethe.evaluate.suite.other_entities finds for `model`). Asked about Takashi Nakamura, the model named
    Prithvi Kapoor; naming him again is no memory of Takashi's coming back, and the validation's coverage
    does not count that node either. The audit, the budget's check and the compliance re-audit all read
    the graph through here."""
    from lethe.evaluate.suite import other_entities
    from lethe.mining.graph import load_graph
    from lethe.supervision.synthesize import other_entity_nodes

    graph = load_graph(graph_file)
    graph.remove_nodes_from(other_entity_nodes(graph, other_entities(model, params.unlearn.entity_retain_names,
                                                                      {anchor})))
    return graph


def strong_memories(graph: nx.DiGraph, min_strength: float) -> dict[str, float]:
    """The anchor's own memories (hop 1) at least `min_strength` strong: key -> strength."""
    return {d["key"]: d["strength"] for _, d in graph.nodes(data=True)
            if d.get("hop") == 1 and d.get("strength", 0) >= min_strength}


def reelicit(backend: Backend, anchor: str, graph: nx.DiGraph, params: Params) -> dict:
    """Elicit the anchor again (fresh seed) and measure how much of the graph's strong memory returns.

    Returns {"return": share or None, "memories": {key: [strength before, strength now]}}.
    """
    from lethe.mining.graph import elicit_anchor
    from lethe.mining.score import anchor_aliases, score

    strong = strong_memories(graph, params.audit.strong_strength)
    if not strong:
        return {"return": None, "memories": {}}
    cfg = params.elicit.model_copy(update={"samples": params.audit.reelicit_samples,
                                           "seed": params.audit.reelicit_seed})
    responses = elicit_anchor(backend, anchor, cfg)
    found = {node.key: node.strength for node in score(responses, anchor_aliases(anchor), 1e-9)}
    now = {key: found.get(key, 0.0) for key in strong}
    total = sum(strong.values())
    returned = sum(s for key, s in strong.items() if now[key] >= params.score.tau)
    return {"return": returned / total, "memories": {k: [strong[k], now[k]] for k in strong}}


# -- relearning attack ----------------------------------------------------------------------------
@contextmanager
def relearned(model: torch.nn.Module, tokenizer, pairs: Pairs, steps: int, lr: float, seed: int,
              batch_size: int = 8, lora_rank: int = 0) -> Iterator[torch.nn.Module]:
    """`model` after `steps` AdamW steps on `pairs` (answer-token loss), for the block; on exit it is
    exactly the model it was (weights, trainable flags, mode).

    `lora_rank` 0 trains every parameter in place; the weights before are kept in host memory, so the
    device holds the model once (plus the optimizer's state), not a second copy of it. `lora_rank` > 0
    trains a fresh LoRA of that rank on every projection over the untouched weights and removes it on
    exit: no copy at all, the attack that fits a large model on one GPU.
    """
    if not pairs:
        raise LetheError("the relearning attack needs at least one forget row to train on")
    parameters = list(model.parameters())
    flags, was_training = [p.requires_grad for p in parameters], model.training
    with_lora = None
    try:
        with _restored_on_exit([] if lora_rank > 0 else parameters):
            if lora_rank > 0:
                attacked = with_lora = _with_attack_lora(model, lora_rank)
            else:
                attacked = model
                for parameter in parameters:  # a merged adapter leaves the base weights frozen
                    parameter.requires_grad_(True)
            _fine_tune(attacked, tokenizer, pairs, steps, lr, seed, batch_size)
            attacked.eval()
            yield attacked
    finally:
        if with_lora is not None:
            with_lora.unload()  # the LoRA layers out, the original modules back
        for parameter, flag in zip(parameters, flags):
            parameter.grad = None
            parameter.requires_grad_(flag)
        model.train(was_training)


@contextmanager
def _restored_on_exit(tensors: Sequence[torch.Tensor]) -> Iterator[None]:
    """The tensors' values are kept in host memory and copied back when the block ends, however it ends."""
    snapshot = [tensor.detach().to("cpu", copy=True) for tensor in tensors]
    try:
        yield
    finally:
        with torch.no_grad():
            for tensor, before in zip(tensors, snapshot):
                tensor.copy_(before)


def _fine_tune(model: torch.nn.Module, tokenizer, pairs: Pairs, steps: int, lr: float, seed: int,
               batch_size: int) -> None:
    from lethe.llm.format import PromptFormat

    model.train()
    trained = [p for p in model.parameters() if p.requires_grad]
    encoded = [PromptFormat(tokenizer).encode(q, a) for q, a in pairs]
    optimizer = torch.optim.AdamW(trained, lr=lr)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    with torch.enable_grad():
        for _ in range(steps):
            chosen = rng.sample(range(len(encoded)), min(batch_size, len(encoded)))
            batch = collate_qa([encoded[i] for i in chosen], tokenizer.pad_token_id)
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)


def _with_attack_lora(model: torch.nn.Module, rank: int):
    """`model` under a fresh LoRA of `rank` on every attention and MLP projection (in place; peft's
    `unload()` takes it out again)."""
    from peft import LoraConfig, get_peft_model

    from lethe.llm.layers import projection_names, uses_conv1d

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    targets = projection_names(model)
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets,
                                            fan_in_fan_out=uses_conv1d(model, targets), task_type="CAUSAL_LM"))


def attack_rows(train: Pairs, rows: int, seed: int, attacks: int = 1) -> list[list[tuple[str, str]]]:
    """The attackers' data: `attacks` draws of `rows` training forget rows (seeds seed, seed + 1, ...);
    a clear error if the forget set has fewer rows than one attack needs."""
    if rows > len(train):
        raise LetheError(f"audit.relearn_rows is {rows}, but the training forget set has only {len(train)} rows: "
                         "the attack cannot be larger than the forget set")
    return [random.Random(seed + k).sample(list(train), rows) for k in range(attacks)]


# -- quantization ---------------------------------------------------------------------------------
def _round_int8_rows(weight: torch.Tensor) -> torch.Tensor:
    scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
    return (weight / scale).round().clamp(-127, 127) * scale


def _round_nf4(weight: torch.Tensor, block: int) -> torch.Tensor:
    levels = torch.tensor(NF4_LEVELS, dtype=torch.float32, device=weight.device)
    flat = weight.float().flatten()
    pad = (-len(flat)) % block
    blocks = torch.nn.functional.pad(flat, (0, pad)).view(-1, block)
    absmax = blocks.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
    normed = blocks / absmax
    out = torch.empty_like(blocks)
    for start in range(0, len(blocks), 4096):  # bounded memory: |levels| x chunk
        chunk = normed[start:start + 4096]
        out[start:start + 4096] = levels[(chunk.unsqueeze(-1) - levels).abs().argmin(-1)]
    return (out * absmax).flatten()[: len(flat)].view_as(weight).to(weight.dtype)


@contextmanager
def quantized(model: torch.nn.Module, bits: int, block: int) -> Iterator[torch.nn.Module]:
    """`model` with its projection weights rounded to `bits` (8: int8 row-wise absmax; 4: NF4 blocks)
    for the block, restored exactly on exit (the weights before wait in host memory, so the device
    never holds a second copy of the model).

    Embeddings and the output head stay in full precision, as bitsandbytes leaves them.
    """
    from lethe.llm.layers import adaptable_layers

    weights = [module.weight for module in adaptable_layers(model).values()]
    with _restored_on_exit(weights):
        with torch.no_grad():
            for weight in weights:
                weight.copy_(_round_int8_rows(weight) if bits == 8 else _round_nf4(weight, block))
        yield model


def changed_fraction(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    """Share of weights that differ between two state dicts of the same model."""
    changed = total = 0
    for name, x in before.items():
        changed += int((x != after[name].to(x.device)).sum())
        total += x.numel()
    return changed / max(total, 1)


# -- privacy --------------------------------------------------------------------------------------
def privleak(auc_model: float | None, auc_reference: float | None) -> float | None:
    """open-unlearning's privleak from min-k AUCs (forget vs holdout) of the model and the reference."""
    if auc_model is None or auc_reference is None:
        return None
    s, r = 1.0 - auc_model, 1.0 - auc_reference
    return (s - r) / (r + 1e-10) * 100.0


# -- the whole audit of one model -----------------------------------------------------------------
def audit_model(backend: Backend, params: Params, anchor: str, graph: nx.DiGraph | None, heldout: Pairs,
                attacks: Sequence[Pairs], gold: Pairs, with_attack: bool = True,
                heldout_nodes: Sequence[str] | None = None) -> dict:
    """Every audit measure of one plain model (see the module docstring); keys are metric names.

    `attacks` are the attacker's row sets, one relearning attack each (seed audit.seed + k), run at
    every learning rate of audit.relearn_lr. Per rate the value is the attacks' mean;
    `relearn_<probe>_by_lr` keeps {rate: {"mean", "each", "per_probe", "groups"}} (per_probe: each probe's
    recall, averaged over the attacks; groups: the fact each probe asks about, `heldout_nodes` for the
    held-out probes, one per probe for gold; both for the gate's bootstrap interval; the gate pairs rates
    with the reference's) and the metric is the strongest rate's mean. One attack on 8 rows is noisy: on
    the default world the same model's gold recall after it spans 0.23 to 0.39 across three draws.
    Each rate also keeps "novel_mean" and "novel_per_probe" (`novel_each`: only the facts the attack's
    rows did not contain; the metric relearn_<probe>_novel at the strongest rate). Private keys keep the
    answers for the report: `_heldout_answers` (unattacked) and `_relearn_answers` ({probes: {rate:
    the answers after the first attack}}).
    """
    cfg, max_new_tokens = params.audit, params.audit.max_new_tokens
    clock = _PartClock()
    with clock("recall"):
        out: dict = {}
        for probes, pairs in (("heldout", heldout), ("gold", gold)):
            if probes == "gold" and not pairs:
                continue
            answers, recalls = answered(backend, pairs, max_new_tokens)
            out[M.RECALLED[probes]] = sum(recalls) / len(recalls) if recalls else None
            out[M.PROBE_COUNT[probes]] = len(pairs)
            out[M.RECALLED_FACTS[probes]], out[M.STATED[probes]] = stated_facts(answers, pairs, cfg.stated_min_facts)
            out[M.RECALLED_NOVEL[probes]] = mean_known([mean_known(novel_each(answers, pairs, rows))
                                                         for rows in attacks]) if pairs else None
            if probes == "heldout":
                out["_heldout_answers"] = answers
    if graph is not None:
        with clock("reelicit"):
            found = reelicit(backend, anchor, graph, params)
        out[M.REELICIT_RETURN] = found["return"]
        out["_reelicit_memories"] = found["memories"]
    if with_attack:
        with clock("relearn"):
            out.update(_relearning(backend, heldout, gold, attacks, cfg, max_new_tokens, heldout_nodes))
    for bits in cfg.quantize_bits:
        with clock("quantize"), quantized(backend.model, bits, cfg.quantize_block) as model:
            rounded = Backend(model, backend.tokenizer, backend.batch_size)
            out[ROUNDED[bits, "heldout"]] = recall(rounded, heldout, max_new_tokens)
            if gold:
                out[ROUNDED[bits, "gold"]] = recall(rounded, gold, max_new_tokens)
    out.update(clock.metrics())
    return out


class _PartClock:
    """Seconds per part of the audit, as metrics (M.AUDIT_SECONDS, M.AUDIT_PART_SECONDS), so a run
    shows what its audit cost and where (MLflow logs them beside the measures)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, part: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - started

    def metrics(self) -> dict[str, float]:
        return {M.AUDIT_SECONDS: sum(self.seconds.values()),
                **{M.AUDIT_PART_SECONDS[part]: value for part, value in self.seconds.items()}}


@dataclass
class AttackedRecall:
    """One probe set's recall after each of several relearning attacks at one rate."""

    recalls: list[list[float]]  # per attack, per probe: ROUGE-L recall
    novel: list[list[float | None]]  # per attack, per probe: recall of the facts the attack did not hand over
    answers: list[list[str]]  # per attack, per probe

    @property
    def mean(self) -> float:
        """Mean over the attacks of each attack's mean recall."""
        return sum(self.each) / len(self.each)

    @property
    def each(self) -> list[float]:
        """Each attack's mean recall."""
        return [sum(recalls) / len(recalls) for recalls in self.recalls]

    @property
    def per_probe(self) -> list[float]:
        """Each probe's recall, averaged over the attacks."""
        return [sum(column) / len(column) for column in zip(*self.recalls)]

    @property
    def novel_per_probe(self) -> list[float | None]:
        """Each probe's new-token recall, averaged over the attacks that left it any new token."""
        return [mean_known(column) for column in zip(*self.novel)]

    @property
    def novel_mean(self) -> float | None:
        """The gate's measure (gate.relearn_tokens: novel): the mean of `novel_per_probe`."""
        return mean_known(self.novel_per_probe)


def attacked_recall(backend: Backend, attacks: Sequence[Pairs], probe_sets: dict[str, Pairs], steps: int,
                    lr: float, seed: int, max_new_tokens: int, lora_rank: int = 0) -> dict[str, AttackedRecall]:
    """Run each attack (attack k: `steps` steps at `lr` on its rows, seed `seed + k`) on `backend`'s model and
    score every non-empty probe set after it. The model is left as it was."""
    out = {probe: AttackedRecall([], [], []) for probe, pairs in probe_sets.items() if pairs}
    for k, rows in enumerate(attacks):
        with relearned(backend.model, backend.tokenizer, rows, steps, lr, seed + k, lora_rank=lora_rank) as model:
            attacked = Backend(model, backend.tokenizer, backend.batch_size)
            for probe, result in out.items():
                answers, recalls = answered(attacked, probe_sets[probe], max_new_tokens)
                result.recalls.append(recalls)
                result.novel.append(novel_each(answers, probe_sets[probe], rows))
                result.answers.append(answers)
    return out


def _relearning(backend: Backend, heldout: Pairs, gold: Pairs, attacks: Sequence[Pairs], cfg: AuditParams,
                max_new_tokens: int, heldout_nodes: Sequence[str] | None = None) -> dict:
    """Every attack at every audit.relearn_lr rate: recall after it, per probe set (see audit_model)."""
    if heldout_nodes is not None and len(heldout_nodes) != len(heldout):
        raise LetheError(f"{len(heldout_nodes)} node labels for {len(heldout)} held-out probes")
    by_lr: dict[str, dict[str, dict]] = {"heldout": {}, "gold": {}}
    probe_sets = {"heldout": heldout, "gold": gold}
    groups = {"heldout": list(heldout_nodes) if heldout_nodes is not None else [f"#{i}" for i in range(len(heldout))],
              "gold": [f"#{i}" for i in range(len(gold))]}
    answers_by_lr: dict[str, dict[str, list[str]]] = {"heldout": {}, "gold": {}}
    for lr in cfg.relearn_lrs:
        results = attacked_recall(backend, attacks, probe_sets, cfg.relearn_steps, lr, cfg.seed, max_new_tokens,
                                  lora_rank=cfg.relearn_lora_rank)
        for probe, result in results.items():
            answers_by_lr[probe][f"{lr:g}"] = result.answers[0]
            by_lr[probe][f"{lr:g}"] = {"mean": result.mean, "each": result.each,
                                       "per_probe": [round(v, 4) for v in result.per_probe],
                                       "groups": groups[probe], "novel_mean": result.novel_mean,
                                       "novel_per_probe": [None if v is None else round(v, 4)
                                                           for v in result.novel_per_probe]}
    out: dict = {}
    for probe, rates in by_lr.items():
        if rates:
            strongest = max(rates, key=lambda rate: rates[rate]["mean"])
            out[M.RELEARNED[probe]] = rates[strongest]["mean"]
            out[M.RELEARNED_NOVEL[probe]] = rates[strongest]["novel_mean"]
            out[M.RELEARNED_BY_RATE[probe]] = rates
    out["_relearn_answers"] = {probe: rates for probe, rates in answers_by_lr.items() if rates}
    return out


def load_plain(model_path: str | Path, adapter: str | Path | None, device: str, batch_size: int) -> Backend:
    """A backend whose model is a plain module: the adapter (if any) merged into a float32 copy."""
    from lethe.evaluate.runner import with_adapter  # merges into float32 weights

    backend = Backend.load(model_path, device, batch_size, dtype=torch.float32)
    return backend if adapter is None else with_adapter(backend, Path(adapter))
