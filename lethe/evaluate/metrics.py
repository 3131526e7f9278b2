"""Every metric's key, declared once: the evaluation writes it, and the gate, the report, the flow's
result and the CLI summary read it from here (never a string spelled again elsewhere).

A metric is one `metric(...)` line below: its key (the name in MLflow and metrics.json), a label
for people, which direction is good for a forgotten entity, and where it shows: in the report table
(`report`), in the request's result and CLI summary (`summary`), among the audit's measures
(`audit`). See docs/extending.md for the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Metric:
    """What the pipeline knows about one metric key."""

    key: str
    label: str
    better: Literal["lower", "higher"]  # for the forgotten entity's metrics: lower means forgotten
    report: bool = True
    summary: bool = False
    audit: bool = False


METRICS: dict[str, Metric] = {}


def metric(key: str, label: str, better: Literal["lower", "higher"], *, report: bool = True, summary: bool = False,
           audit: bool = False) -> str:
    """Declare a metric; returns its key (the constant the rest of the code imports)."""
    if key in METRICS:
        raise ValueError(f"metric {key!r} is declared twice")
    METRICS[key] = Metric(key, label, better, report, summary, audit)
    return key


# -- the entity: TOFU gold (benchmark authors), the request's own sets --------------------------------
FORGET_ROUGE = metric("forget_Q_A_ROUGE", "gold forget ROUGE (benchmark oracle)", "lower", summary=True)
FORGET_PROB = metric("forget_Q_A_Prob", "gold forget answer probability", "lower")
FORGET_TRUTH_RATIO = metric("forget_Truth_Ratio", "gold forget truth ratio", "higher")
FORGET_QUALITY = metric("forget_quality", "forget quality (KS p-value vs the retain model)", "higher", summary=True)
FORGET_SET_ROUGE = metric("forget_set_rouge", "ROUGE on the training forget set (never evidence)", "lower")
# -- what must be kept ------------------------------------------------------------------------------
MODEL_UTILITY = metric("model_utility", "model utility", "higher", summary=True)
RETAIN_ROUGE = metric("retain_Q_A_ROUGE", "retain-author ROUGE", "higher", summary=True)
REAL_AUTHORS_ROUGE = metric("ra_Q_A_ROUGE", "real-authors ROUGE", "higher")
WORLD_FACTS_ROUGE = metric("wf_Q_A_ROUGE", "world-facts ROUGE", "higher")
UTILITY_PARTS = tuple(metric(key, f"utility part {key}", "higher", report=False) for key in (
    "retain_Q_A_Prob", "retain_Truth_Ratio", "ra_Q_A_Prob_normalised", "ra_Truth_Ratio",
    "wf_Q_A_Prob_normalised", "wf_Truth_Ratio")) + (RETAIN_ROUGE, REAL_AUTHORS_ROUGE, WORLD_FACTS_ROUGE)
NEIGHBOR_ROUGE = metric("neighbor_rouge", "neighbor ROUGE", "higher")
ENTITY_ROUGE = metric("entity_rouge", "ROUGE per other entity", "higher", report=False)
ENTITY_ANSWERS = metric("entity_answers", "answers each other entity's ROUGE rests on", "higher", report=False)
BASE_ENTITY_ROUGE = metric("base_entity_rouge", "the base model's ROUGE per other entity", "higher", report=False)
ENTITY_RECOGNITION = metric("recognition_by_entity", "share of elicitation prompts naming each other entity", "higher",
                            report=False)
BASE_ENTITY_RECOGNITION = metric("base_recognition_by_entity", "the base model's recognition of each other entity",
                                 "higher", report=False)
# -- RWKU-style probes on the entity ----------------------------------------------------------------
PROBES = tuple(metric(f"probe_{name}", f"{name.replace('_', ' ')} probe", "lower")
               for name in ("paraphrase_rouge", "fill_blank_recall", "prefix_injection_rouge", "role_play_rouge",
                            "other_language_rouge", "reverse_query_leak"))
# -- membership inference ----------------------------------------------------------------------------
MIA_LOSS_AUC = metric("mia_loss_auc", "MIA LOSS AUC (forget vs holdout)", "lower")
MIA_ZLIB_AUC = metric("mia_zlib_auc", "MIA zlib AUC (forget vs holdout)", "lower")
MIA_MIN_K_AUC = metric("mia_min_k_auc", "MIA min-k AUC (forget vs holdout)", "lower")
MIA_MIN_K_PLUS_PLUS_AUC = metric("mia_min_k_plus_plus_auc", "MIA min-k%++ AUC (forget vs holdout)", "lower",
                                 summary=True)
PRIVLEAK = metric("privleak", "privleak (0 ideal, about -100 still memorized)", "higher", summary=True)
# -- the audit: data the unlearning never saw (lethe.evaluate.audit) ---------------------------------
HELDOUT_ROUGE = metric("heldout_rouge", "held-out probes", "lower", summary=True, audit=True)
GOLD_ROUGE = metric("gold_rouge", "gold QA (audit copy)", "lower")
REELICIT_RETURN = metric("reelicit_return", "re-elicited strong memories", "lower", summary=True, audit=True)
RELEARN_HELDOUT_ROUGE = metric("relearn_heldout_rouge", "held-out, after a relearning attack", "lower",
                               summary=True, audit=True)
RELEARN_GOLD_ROUGE = metric("relearn_gold_rouge", "gold, after a relearning attack", "lower")
RECALLED = {"heldout": HELDOUT_ROUGE, "gold": GOLD_ROUGE}  # by probe set, unattacked
# how many probes a set holds: 2 held-out probes are thin evidence, and the gate says so beside its verdict
PROBE_COUNT = {probes: metric(f"{probes}_probe_count", f"{probes}, probes scored", "higher", report=False)
               for probes in RECALLED}
# the same greedy answers, scored on the facts only: tokens neither the question holds nor function words
# (lethe.evaluate.audit.fact_share), and the share of probes whose facts the answer states (audit.stated_min_facts).
# Before unlearning, a probe whose facts the model does not state tests no memory it holds.
RECALLED_FACTS = {probes: metric(f"{probes}_facts", f"{probes}, share of each probe's facts the answer states",
                                 "lower", audit=probes == "heldout") for probes in RECALLED}
STATED = {probes: metric(f"{probes}_stated", f"{probes}, share of probes whose facts the answer states", "lower",
                         audit=probes == "heldout") for probes in RECALLED}
RELEARNED = {"heldout": RELEARN_HELDOUT_ROUGE, "gold": RELEARN_GOLD_ROUGE}  # by probe set, attacked
# {attack learning rate: {"mean", "each"}} per probe set: public, since the gate pairs each rate with
# the reference's, so the record travels with the metrics
RELEARNED_BY_RATE = {probes: metric(f"relearn_{probes}_by_lr", f"{probes}, after a relearning attack, per rate",
                                    "lower", report=False) for probes in RELEARNED}
# ... and only what the attacker did not hand over: the share of each reference answer's facts (its tokens,
# function words aside) that are in neither the attack's rows nor the question, found in the attacked answer
# (lethe.evaluate.audit.novel_each)
RELEARNED_NOVEL = {probes: metric(f"relearn_{probes}_novel", f"{probes}, after a relearning attack, facts the "
                                  "attack did not teach", "lower") for probes in RELEARNED}
# the same fact share unattacked (mean over the attacks' rows): what the model holds beyond what an attack teaches
RECALLED_NOVEL = {probes: metric(f"{probes}_novel", f"{probes}, facts no relearning attack teaches", "lower")
                  for probes in RECALLED}
# how much of a suite run the score cache answered (lethe.evaluate.suite.evaluate)
SCORE_CACHE_HITS = metric("score_cache_hits", "rows of the suite answered from the score cache (stored scores of the "
                          "same unmodified model, lethe.llm.score_cache)", "higher", report=False)
SCORE_CACHE_MISSES = metric("score_cache_misses", "rows of the suite the score cache did not have (scored now, then "
                            "stored)", "lower", report=False)
# what one model's audit cost, in all and per part (lethe.evaluate.audit.audit_model)
AUDIT_SECONDS = metric("audit_model_seconds", "seconds the audit of one model took", "lower", report=False)
AUDIT_PART_SECONDS = {part: metric(f"audit_model_seconds_{part}", f"audit seconds: {part}", "lower", report=False)
                      for part in ("recall", "reelicit", "relearn", "quantize")}
Q8_HELDOUT_ROUGE = metric("q8_heldout_rouge", "held-out, 8-bit rounded", "lower", audit=True)
Q4_HELDOUT_ROUGE = metric("q4_heldout_rouge", "held-out, 4-bit rounded", "lower", summary=True, audit=True)
Q8_GOLD_ROUGE = metric("q8_gold_rouge", "gold, 8-bit rounded", "lower")
Q4_GOLD_ROUGE = metric("q4_gold_rouge", "gold, 4-bit rounded", "lower")


def keys(*, report: bool | None = None, summary: bool | None = None, audit: bool | None = None) -> tuple[str, ...]:
    """The declared keys with the given flags, in declaration order."""
    return tuple(m.key for m in METRICS.values()
                 if (report is None or m.report == report) and (summary is None or m.summary == summary)
                 and (audit is None or m.audit == audit))


def summary(metrics: dict) -> dict:
    """The summary metrics present in `metrics` (the request's result, the CLI)."""
    return {k: metrics[k] for k in keys(summary=True) if metrics.get(k) is not None}
