"""The promotion gate: a pure decision over evaluation metrics, data quality and lineage.

`decide` takes numbers and returns a decision with one row per check, so the same table goes
into MLflow tags, the Prefect artifact, the audit ledger and the human summary.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from lethe.config import AgentParams, GateParams
from lethe.evaluate import metrics as M
from lethe.evaluate.floor import (
    blind_at_floor,
    forgotten,
    probes_separate,
    reelicit_limit,
    share_above_floor,
    too_few_probes,
)

# One entity's audit in a batched request: its metrics before, after, and on a never-trained reference.
EntityEvidence = tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]]
REQUIRED_LINEAGE = ("git_commit", "request_id", "params_hash", "base_model", "base_model_hash",
                    "dvc_md5.forget_set", "dvc_md5.neighbor_set")


@dataclass(frozen=True)
class Check:
    """One gate criterion: its value, its threshold, and whether it passed (None: not applicable)."""

    name: str
    value: float | str | None
    threshold: str
    passed: bool | None
    note: str = ""


@dataclass(frozen=True)
class GateDecision:
    """Passed only when every applicable check passed."""

    passed: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "passed" if self.passed else "rejected"

    @property
    def reasons(self) -> list[str]:
        """One line per failed check."""
        return [f"{c.name}: {c.value} (needs {c.threshold}){' - ' + c.note if c.note else ''}"
                for c in self.checks if c.passed is False]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "status": self.status, "reasons": self.reasons,
                "checks": [asdict(c) for c in self.checks]}


def _ratio(after: float, before: float) -> float:
    return after / before if before > 0 else (0.0 if after == 0 else float("inf"))


def _stated_note(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """How many held-out probes test a memory the starting model says (its greedy answer states at least
    audit.stated_min_facts of their facts), and their fact recall before -> after: information for the
    reader of the held-out check, which still decides on ROUGE-L. "" for an audit without the measure."""
    stated, facts = before.get(M.STATED["heldout"]), M.RECALLED_FACTS["heldout"]
    if stated is None:
        return ""
    now = after.get(facts)
    return (f"; before unlearning the model stated the facts of {stated:.0%} of these probes (fact recall "
            f"{before[facts]:.3f} -> {'n/a' if now is None else f'{now:.3f}'})")


def _probe_count(after: Mapping[str, Any]) -> str:
    """The held-out note's 'on N probes', where the audit counted them: a verdict on two probes is thin
    evidence, and the reader of the decision table should see that beside it (older audits: '')."""
    count = after.get(M.PROBE_COUNT["heldout"])
    return "" if count is None else f" on {count} probe{'' if count == 1 else 's'}"


def _missing(name: str, threshold: str, what: str) -> Check:
    return Check(name, None, threshold, False, f"{what} was not measured")


TOKEN_MEASURES = {"all": ("mean", "per_probe"), "novel": ("novel_mean", "novel_per_probe")}  # gate.relearn_tokens


def _attacked_at(after: Mapping[str, Any], reference: Mapping[str, Any], probes: str, lr: str,
                 field: str) -> tuple[float, float] | None:
    """(the unlearned model's, the reference's) attacked recall `field` at rate `lr`; None where either
    model's per-rate record lacks it."""
    key = M.RELEARNED_BY_RATE[probes]
    mine = ((after.get(key) or {}).get(lr) or {}).get(field)
    theirs = ((reference.get(key) or {}).get(lr) or {}).get(field)
    return None if mine is None or theirs is None else (mine, theirs)


def relearning_gap(after: Mapping[str, Any], reference: Mapping[str, Any], probes: str,
                   tokens: str = "all") -> tuple[float, float, float, str]:
    """(gap, attacked, attacked reference, rate) on `probes` ("heldout" or "gold"): the largest gap over
    the learning rates both models were attacked at; the headline metrics' difference when the
    per-rate record is missing (rate ""). `tokens` "all" scores ROUGE-L recall, "novel" only the tokens
    the attack did not teach (see relearning_novel_gap)."""
    field = TOKEN_MEASURES[tokens][0]
    attacked_key = (M.RELEARNED if tokens == "all" else M.RELEARNED_NOVEL)[probes]
    rates = {lr: pair for lr in after.get(M.RELEARNED_BY_RATE[probes]) or {}
             if (pair := _attacked_at(after, reference, probes, lr, field)) is not None}
    if not rates:
        return after[attacked_key] - reference[attacked_key], after[attacked_key], reference[attacked_key], ""
    return max((mine - theirs, mine, theirs, lr) for lr, (mine, theirs) in rates.items())


def relearning_gap_interval(after: Mapping[str, Any], reference: Mapping[str, Any], probes: str, lr: str,
                            level: float = 0.9, resamples: int = 2000,
                            tokens: str = "all") -> tuple[float, float, int, int] | None:
    """(low, high, probes, groups): a paired bootstrap interval at `level` of the relearning gap at rate
    `lr`. Each probe's attacked recall, unlearned minus reference, is resampled by its group (the
    memory-graph node it asks about, recorded by the audit; each probe its own where none is): probes of
    one node are one fact, and resampling them one by one would count it several times. Seeded, so a
    decision reads the same every time. It shows how much of a gap the choice of probes alone could
    make. None where either model's per-probe record is missing or the two do not pair up. Probes with
    nothing to score (no token the attack did not teach, for `tokens` "novel") are left out."""
    key, field = M.RELEARNED_BY_RATE[probes], TOKEN_MEASURES[tokens][1]
    mine = (after.get(key) or {}).get(lr) or {}
    theirs = (reference.get(key) or {}).get(lr) or {}
    if not mine.get(field) or len(mine[field]) != len(theirs.get(field) or []):
        return None
    groups = mine.get("groups") or [f"#{i}" for i in range(len(mine[field]))]
    if len(groups) != len(mine[field]):
        return None
    by_group: dict[str, list[float]] = {}
    for group, a, b in zip(groups, mine[field], theirs[field]):
        if a is not None and b is not None:
            by_group.setdefault(group, []).append(a - b)
    if not by_group:
        return None
    clusters = list(by_group.values())
    draw = random.Random(0)
    means = []
    for _ in range(resamples):
        drawn = draw.choices(clusters, k=len(clusters))
        means.append(sum(sum(c) for c in drawn) / sum(len(c) for c in drawn))
    means.sort()
    tail = (1 - level) / 2
    return (means[int(tail * (resamples - 1))], means[int((1 - tail) * (resamples - 1))],
            sum(len(c) for c in clusters), len(clusters))


def relearning_novel_gap(after: Mapping[str, Any], reference: Mapping[str, Any], probes: str,
                         lr: str) -> tuple[float, float, float] | None:
    """(gap, attacked, attacked reference) at rate `lr` counting only the reference answers' facts the
    attack did not teach (lethe.evaluate.audit.novel_each): the part of the relearning gap that is not
    the attacker's own words. None where either model's record lacks it."""
    pair = _attacked_at(after, reference, probes, lr, TOKEN_MEASURES["novel"][0])
    return None if pair is None else (pair[0] - pair[1], *pair)


def _relearned_share(gap: float, before: Mapping[str, Any], reference: Mapping[str, Any], start_key: str,
                     gate: GateParams) -> tuple[float | None, float | None]:
    """(share, margin): the gap as a share of what the model knew beyond the never-trained reference on
    the same probes before unlearning (margin = before - reference, both unattacked). None where the
    margin is within gate.heldout_floor_margin: those probes do not tell knowing from not knowing."""
    if before.get(start_key) is None or reference.get(start_key) is None:
        return None, None
    margin = before[start_key] - reference[start_key]
    return (gap / margin, margin) if margin > gate.heldout_floor_margin else (None, margin)


def _token_measure(wanted: str, before: Mapping[str, Any], after: Mapping[str, Any], reference: Mapping[str, Any],
                   probes: str) -> str:
    """gate.relearn_tokens where the audit recorded it for all three models; "all" (ROUGE-L) otherwise (an
    audit from before the token share was kept)."""
    if wanted == "novel" and all(m.get(M.RECALLED_NOVEL[probes]) is not None for m in (before, reference)) and \
            after.get(M.RELEARNED_NOVEL[probes]) is not None and reference.get(M.RELEARNED_NOVEL[probes]) is not None:
        return "novel"
    return "all"


def relearning_check(before: Mapping[str, Any], after: Mapping[str, Any], reference: Mapping[str, Any],
                     gate: GateParams) -> Check:
    """The relearning attack, on every probe set measured (held-out MAGE probes; gold for benchmark
    authors), against the never-trained reference attacked at the same learning rate: the gap in recall,
    and that gap as a share of what the model knew beyond the reference before unlearning. The share
    makes probe sets with different ceilings comparable: held-out probes score 0.2-0.3 before
    unlearning, so a 0.1 gap there is half of what was known. Without a reference: recovery relative
    to before. The row reports the worst probe set (a failing one first)."""
    gaps, recoveries = [], []
    for probes, attacked_key in M.RELEARNED.items():
        attacked = after.get(attacked_key)
        if attacked is None:
            continue
        if reference.get(attacked_key) is not None:
            tokens = _token_measure(gate.relearn_tokens, before, after, reference, probes)
            start_key = (M.RECALLED if tokens == "all" else M.RECALLED_NOVEL)[probes]
            gap, mine, theirs, lr = relearning_gap(after, reference, probes, tokens)
            share, margin = _relearned_share(gap, before, reference, start_key, gate)
            fails = gap > gate.max_relearn_gap or (share is not None and share > gate.max_relearn_share)
            gaps.append((fails, gap, probes, mine, theirs, lr, share, margin, tokens))
        elif before.get(M.RECALLED[probes]):
            start = before[M.RECALLED[probes]]
            recoveries.append((attacked / start, probes, attacked, start))
    if gaps:
        fails, gap, probes, mine, theirs, lr, share, margin, tokens = max(gaps, key=lambda row: row[:2])
        at = f" at lr {lr}" if lr else ""
        of_margin = (f"; {share:.2f} of the {margin:.3f} it knew beyond the never-trained model" if share is not None
                     else "; share n/a (before within the floor margin of the never-trained model)")
        interval = relearning_gap_interval(after, reference, probes, lr, tokens=tokens) if lr else None
        spread = (f"; gap 90% bootstrap interval over its {interval[2]} probes ({interval[3]} facts) "
                  f"{interval[0]:.3f} to {interval[1]:.3f}" if interval else "")
        measured = ("facts the attack did not teach" if tokens == "novel" else
                    "ROUGE-L" + (" (facts the attack did not teach: not recorded)"
                                 if gate.relearn_tokens == "novel" else ""))
        other = relearning_gap(after, reference, probes, "all") if tokens == "novel" else None
        if tokens == "all" and lr:
            novel = relearning_novel_gap(after, reference, probes, lr)
            spread += (f"; on facts the attack did not teach {novel[1]:.3f} vs {novel[2]:.3f} (gap {novel[0]:.3f})"
                       if novel else "")
        elif other:
            spread += (f"; ROUGE-L, the attack's own words included: {other[1]:.3f} vs {other[2]:.3f} "
                       f"(gap {other[0]:.3f})")
        return Check("relearning", round(gap, 4),
                     f"attacked - attacked reference <= {gate.max_relearn_gap} and <= {gate.max_relearn_share} "
                     "of before - reference", not fails,
                     f"{probes} probes{at}, {measured}: {mine:.3f} vs never-trained {theirs:.3f}{of_margin}{spread}")
    if recoveries:
        recovery, probes, attacked, start = max(recoveries)
        return Check("relearning", round(recovery, 4), f"attacked / before <= {gate.max_relearn_recovery}",
                     recovery <= gate.max_relearn_recovery, f"{probes} probes: {attacked:.3f} vs before {start:.3f}")
    return _missing("relearning", f"gap <= {gate.max_relearn_gap}", "the relearning attack")


def forgetting_checks(before: Mapping[str, Any], after: Mapping[str, Any], reference: Mapping[str, Any],
                      gate: GateParams) -> list[Check]:
    """Forgetting, judged on data the unlearning never saw: benchmark gold (an extra oracle where it
    exists), held-out probes, re-elicitation, the relearning attack, and optionally 4-bit rounding."""
    checks: list[Check] = []
    if after.get(M.FORGET_ROUGE) is not None and before.get(M.FORGET_ROUGE) is not None:
        ratio = _ratio(after[M.FORGET_ROUGE], before[M.FORGET_ROUGE])
        checks.append(Check("gold_forgetting", round(ratio, 4), f"<= {gate.max_forget_ratio}x before",
                            ratio <= gate.max_forget_ratio,
                            f"benchmark oracle {before[M.FORGET_ROUGE]:.3f} -> {after[M.FORGET_ROUGE]:.3f}"))
    threshold = (f"<= {gate.max_heldout_ratio}x before, or <= {gate.max_heldout_ratio}x of what it scored above the "
                 f"never-trained reference (when that was > {gate.heldout_floor_margin})")
    h_before, h_after, h_ref = before.get(M.HELDOUT_ROUGE), after.get(M.HELDOUT_ROUGE), reference.get(M.HELDOUT_ROUGE)
    if h_before is None or h_after is None:
        checks.append(_missing("heldout_forgetting", threshold, "held-out recall"))
    else:
        ratio = _ratio(h_after, h_before)
        margin = gate.heldout_floor_margin
        gone = forgotten(h_before, h_after, h_ref, margin, gate.max_heldout_ratio)
        # Probes within the margin of a never-trained model before unlearning cannot show forgetting:
        # still there is a marked n/a, never a pass (the other checks carry the decision).
        blind = blind_at_floor(h_before, h_after, h_ref, margin)
        note = f"{h_before:.3f} -> {h_after:.3f}{_probe_count(after)}"
        if h_ref is not None:
            note += f"; never-trained reference {h_ref:.3f}"
            if probes_separate(h_before, h_ref, margin):
                note += f", {share_above_floor(h_before, h_after, h_ref):.2f}x of the recall above it left"
        if blind and not gone:
            note += " (n/a: before, already within the margin of it, these probes cannot show forgetting)"
        note += _stated_note(before, after)
        verdict = True if gone else (None if blind else False)
        count = after.get(M.PROBE_COUNT["heldout"])
        if too_few_probes(count, gate):
            # A ratio on one or two probes is a coin toss: fail closed rather than pass or shrug on it.
            verdict = False
            note = (f"too few held-out probes to judge ({count} < gate.min_heldout_probes {gate.min_heldout_probes}: "
                    "hold out more with audit.heldout_share, or keep more greedy answers with a lower "
                    f"synthesize.greedy_min_confidence); {note}")
        checks.append(Check("heldout_forgetting", round(ratio, 4), threshold, verdict, note))
    back, back_ref = after.get(M.REELICIT_RETURN), reference.get(M.REELICIT_RETURN)
    limit = reelicit_limit(back_ref, gate)
    label = (f"<= reference {back_ref:.3f} + {gate.max_reelicit_excess}" if back_ref is not None
             else f"<= {gate.max_reelicit_return} (no reference)")
    if back is None:
        checks.append(Check("reelicitation", None, label, None, "the graph has no strong memory to re-elicit"))
    else:
        checks.append(Check("reelicitation", round(back, 4), label, back <= limit,
                            "strength-weighted share of strong memories that came back"))
    checks.append(relearning_check(before, after, reference, gate))
    q_before, q_after = before.get(M.Q4_HELDOUT_ROUGE), after.get(M.Q4_HELDOUT_ROUGE)
    if q_before is not None and q_after is not None:
        ratio = _ratio(q_after, q_before)
        gated = gate.max_quantized_ratio is not None
        checks.append(Check("quantized_4bit", round(ratio, 4),
                            f"<= {gate.max_quantized_ratio}x before" if gated else "reported",
                            ratio <= gate.max_quantized_ratio if gated else None, f"{q_before:.3f} -> {q_after:.3f}"))
    q_before, q_after = before.get(M.FORGET_QUALITY), after.get(M.FORGET_QUALITY)
    if q_after is not None:
        floor = max(gate.min_forget_quality, q_before if q_before is not None else 0.0)
        checks.append(Check(M.FORGET_QUALITY, float(f"{q_after:.4g}"), f">= {floor:.4g}", q_after >= floor))
    return checks


def membership_checks(after: Mapping[str, Any], gate: GateParams) -> list[Check]:
    """Whether a membership attack still tells the forget rows from never-seen ones: the min-k%++ AUC, gated
    two-sided when `gate.max_mia_auc` is set (0.5: indistinguishable). A marked n/a when it is gated and
    the entity has no benchmark rows to attack; nothing when it is neither gated nor measured."""
    auc, bound = after.get(M.MIA_MIN_K_PLUS_PLUS_AUC), gate.max_mia_auc
    if bound is None:
        return [] if auc is None else [Check("membership", round(auc, 4), "reported", None,
                                             "min-k%++ AUC, forget vs holdout rows")]
    threshold = f"{1 - bound:.2f} <= AUC <= {bound}"
    if auc is None:
        return [Check("membership", None, threshold, None,
                      "n/a: no benchmark forget and holdout rows to attack for this entity")]
    return [Check("membership", round(auc, 4), threshold, 1 - bound <= auc <= bound,
                  "min-k%++ AUC, forget vs holdout rows (0.5: the attack cannot tell them apart)")]


def keeping_checks(after: Mapping[str, Any], base: Mapping[str, Any], gate: GateParams,
                   spared: Sequence[str]) -> list[Check]:
    """What must be kept, against the original base model: utility, each of its parts, and every
    other entity's knowledge (the target and earlier forgotten entities excepted)."""
    from lethe.evaluate.tofu import UTILITY_KEYS

    checks: list[Check] = []
    utility, base_utility = after.get(M.MODEL_UTILITY), base.get(M.MODEL_UTILITY)
    if utility is None or not base_utility:
        checks.append(_missing("utility", f">= {gate.min_utility_ratio}x base", "utility"))
    else:
        ratio = utility / base_utility
        checks.append(Check("utility", round(ratio, 4), f">= {gate.min_utility_ratio}x base",
                            ratio >= gate.min_utility_ratio, f"{base_utility:.3f} -> {utility:.3f}"))
    parts = [(k, after[k] / base[k]) for k in UTILITY_KEYS if after.get(k) is not None and base.get(k)]
    if parts:
        key, worst = min(parts, key=lambda item: item[1])
        checks.append(Check("utility_parts", round(worst, 4), f"each >= {gate.min_utility_part_ratio}x base",
                            worst >= gate.min_utility_part_ratio, f"weakest: {key}"))
    entities = after.get(M.ENTITY_ROUGE) or {}
    base_entities = after.get(M.BASE_ENTITY_ROUGE) or {}
    ratios = [(name, entities[name] / base_entities[name]) for name in entities
              if name not in spared and base_entities.get(name)]
    if ratios:
        name, worst = min(ratios, key=lambda item: item[1])
        answers = (after.get(M.ENTITY_ANSWERS) or {}).get(name)
        on = f" ({answers} answers)" if answers else ""
        checks.append(Check("entity_retention", round(worst, 4), f"every entity >= {gate.min_entity_retention}x base",
                            worst >= gate.min_entity_retention, f"{len(ratios)} entities; weakest: {name}{on}"))
    else:
        checks.append(_missing("entity_retention", f"every entity >= {gate.min_entity_retention}x base",
                               "other entities' knowledge"))
    return [*checks, recognition_check(after, gate, spared)]


def recognition_check(after: Mapping[str, Any], gate: GateParams, spared: Sequence[str]) -> Check:
    """Every other entity the base model recognized (named in at least gate.recognized_from of its
    elicitation prompts) is still named in gate.min_entity_recognition of that share: open recall about
    the people the model keeps, which question-answer scores miss (lethe.evaluate.recognition). Not
    applicable where no other entity is known (no world model and no unlearn.entity_retain_names)."""
    threshold = f"every recognized entity >= {gate.min_entity_recognition}x base"
    if M.ENTITY_RECOGNITION not in after:
        return _missing("entity_recognition", threshold, "other entities' recognition")
    now, base = after[M.ENTITY_RECOGNITION], after.get(M.BASE_ENTITY_RECOGNITION) or {}
    ratios = [(name, now[name] / base[name]) for name in now
              if name not in spared and base.get(name, 0.0) >= gate.recognized_from and base[name] > 0]
    if not ratios:
        return Check("entity_recognition", None, threshold, None,
                     "no other entity the base model recognizes: list them in unlearn.entity_retain_names")
    name, worst = min(ratios, key=lambda item: item[1])
    return Check("entity_recognition", round(worst, 4), threshold, worst >= gate.min_entity_recognition,
                 f"{len(ratios)} entities; weakest: {name} ({base[name]:.2f} -> {now[name]:.2f})")


def decide(before: Mapping[str, Any], after: Mapping[str, Any], base: Mapping[str, Any],
           reference: Mapping[str, Any], data_quality_passed: bool, lineage: Mapping[str, str], gate: GateParams,
           spared: Sequence[str] = ()) -> GateDecision:
    """Gate an unlearned model on its audit.

    before / after: metrics of the starting model (the current champion, or the base model) and of
    the new one; base: the original base model's utility and parts (so repeated requests cannot
    erode them step by step); reference: the same audit on a model that never knew the entity
    ({} where none exists); spared: entities whose loss is intended (the target, earlier targets).
    """
    checks = [*forgetting_checks(before, after, reference, gate), *membership_checks(after, gate),
              *keeping_checks(after, base, gate, spared),
              *_record_checks(data_quality_passed, lineage, gate)]
    return GateDecision(all(c.passed is not False for c in checks), checks)


def _record_checks(data_quality_passed: bool, lineage: Mapping[str, str], gate: GateParams) -> list[Check]:
    missing = [k for k in REQUIRED_LINEAGE if not lineage.get(k)]
    return [Check("data_quality", "passed" if data_quality_passed else "failed", "GX checkpoints pass",
                  data_quality_passed if gate.require_data_quality else None),
            Check("lineage", "complete" if not missing else "missing " + ", ".join(missing),
                  "every lineage tag present", not missing)]


def entity_label(anchor: str) -> str:
    """An anchor as it may appear in a check name (MLflow tag keys allow word characters, . - and space)."""
    return re.sub(r"[^\w.\- ]+", "", anchor).strip() or "entity"


def decide_batch(entities: Mapping[str, EntityEvidence], after: Mapping[str, Any], base: Mapping[str, Any],
                 data_quality_passed: bool, lineage: Mapping[str, str], gate: GateParams,
                 spared: Sequence[str]) -> GateDecision:
    """Gate one adapter that forgets several entities (a batched request): every forgetting check once
    per entity (named `check - entity`), what must be kept once, on `after` (utility, its parts, every
    entity outside `spared`, which holds the batch's targets and earlier ones). Passed only when every
    entity is forgotten: one adapter cannot be promoted for some of its targets."""
    checks = [replace(check, name=f"{check.name} - {entity_label(anchor)}")
              for anchor, (before_e, after_e, reference_e) in entities.items()
              for check in forgetting_checks(before_e, after_e, reference_e, gate)]
    checks += [*membership_checks(after, gate), *keeping_checks(after, base, gate, spared),
               *_record_checks(data_quality_passed, lineage, gate)]
    return GateDecision(all(c.passed is not False for c in checks), checks)


def decide_agentic(leak_rates: Mapping[str, float], retain_quality_ratio: float | None, agent: AgentParams,
                   gate: GateParams) -> GateDecision:
    """Gate an agentic (SBU) request, one row per check: both final leak rates under their bounds,
    retain answer quality within gate.min_utility_ratio of before (n/a where it was not measured)."""
    ratio = retain_quality_ratio
    checks = [
        Check("retrieval_leak", round(leak_rates["retrieval"], 4), f"<= {agent.retrieval_leak_bound}",
              leak_rates["retrieval"] <= agent.retrieval_leak_bound, "memory entries about the target still retrieved"),
        Check("generation_leak", round(leak_rates["generation"], 4), f"<= {agent.generation_leak_bound}",
              leak_rates["generation"] <= agent.generation_leak_bound, "answers that still name the target's facts"),
        Check("retain_quality", None if ratio is None else round(ratio, 4), f">= {gate.min_utility_ratio}x before",
              None if ratio is None else ratio >= gate.min_utility_ratio, "retain answer quality"),
    ]
    return GateDecision(all(c.passed is not False for c in checks), checks)


def decision_tags(decision: GateDecision) -> dict[str, str]:
    """The gate.* tags of a model version: status, reasons and every check's value."""
    return {"gate.status": decision.status, "gate.reasons": "; ".join(decision.reasons) or "none",
            **{f"gate.{c.name}": str(c.value) for c in decision.checks}}


def decision_markdown(decision: GateDecision) -> str:
    """The decision table as markdown (the model version's description, the report)."""
    lines = [f"**Gate: {decision.status}**", "", "| check | value | threshold | result | note |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['check']} | {r['value']} | {r['threshold']} | {r['result']} | {r['note']} |"
              for r in decision_table(decision)]
    return "\n".join(lines) + "\n"


def decision_table(decision: GateDecision) -> list[dict[str, Any]]:
    """Rows for a table artifact / markdown rendering."""
    return [{"check": c.name, "value": c.value, "threshold": c.threshold,
             "result": {True: "pass", False: "FAIL", None: "n/a"}[c.passed], "note": c.note}
            for c in decision.checks]
