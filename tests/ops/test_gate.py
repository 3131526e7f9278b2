"""The gate is a pure function: each check on hand-made metrics."""

import pytest

from lethe.config import load_params
from lethe.ops.gate import REQUIRED_LINEAGE, decide, decision_markdown, decision_table

GATE = load_params().gate.model_copy(update={"max_forget_ratio": 0.5, "max_heldout_ratio": 0.3,
                                             "min_utility_ratio": 0.9, "min_forget_quality": 0.0})
LINEAGE = {key: "x" for key in REQUIRED_LINEAGE}
PARTS = {"retain_Q_A_Prob": 0.9, "retain_Q_A_ROUGE": 0.9, "retain_Truth_Ratio": 0.6, "ra_Q_A_Prob_normalised": 0.5,
         "ra_Q_A_ROUGE": 0.9, "ra_Truth_Ratio": 0.6, "wf_Q_A_Prob_normalised": 0.5, "wf_Q_A_ROUGE": 0.9,
         "wf_Truth_Ratio": 0.6}
BASE = {"model_utility": 0.8, **PARTS}
BEFORE = {"forget_Q_A_ROUGE": 0.9, "heldout_rouge": 0.6, "model_utility": 0.8, "forget_quality": 1e-5}
REFERENCE = {"heldout_rouge": 0.1, "reelicit_return": 0.0, "relearn_heldout_rouge": 0.15}
ENTITIES = {"Author A": 0.9, "Author B": 0.8}
RECOGNIZED = {"Author A": 1.0, "Author B": 0.8}
GOOD = {"forget_Q_A_ROUGE": 0.2, "heldout_rouge": 0.12, "reelicit_return": 0.05, "relearn_heldout_rouge": 0.2,
        "model_utility": 0.78, "forget_quality": 1e-3, "entity_rouge": ENTITIES, "base_entity_rouge": ENTITIES,
        "recognition_by_entity": RECOGNIZED, "base_recognition_by_entity": RECOGNIZED, **PARTS}


def _decide(after, before=BEFORE, reference=REFERENCE, base=BASE, quality=True, lineage=LINEAGE, gate=GATE,
            spared=("Target",)):
    return decide(before, after, base, reference, quality, lineage, gate, spared)


def _failing(decision):
    return [reason.split(":")[0] for reason in decision.reasons]


def _heldout_row(decision):
    return next(r for r in decision_table(decision) if r["check"] == "heldout_forgetting")


def test_passes_when_every_audit_check_holds():
    decision = _decide(GOOD)
    assert decision.passed and decision.reasons == []
    results = {row["check"]: row["result"] for row in decision_table(decision)}
    assert results == {"gold_forgetting": "pass", "heldout_forgetting": "pass", "reelicitation": "pass",
                       "relearning": "pass", "forget_quality": "pass", "utility": "pass", "utility_parts": "pass",
                       "entity_retention": "pass", "entity_recognition": "pass", "data_quality": "pass",
                       "lineage": "pass"}
    assert "| relearning |" in decision_markdown(decision)


@pytest.mark.parametrize("change, failing", [
    ({"forget_Q_A_ROUGE": 0.5}, "gold_forgetting"),                     # 0.56x of the oracle
    ({"heldout_rouge": 0.3}, "heldout_forgetting"),                     # 0.5x, and far above the reference
    ({"reelicit_return": 0.4}, "reelicitation"),                        # > reference 0.0 + 0.1
    ({"relearn_heldout_rouge": 0.5}, "relearning"),                     # gap 0.35 to the attacked reference
    ({"model_utility": 0.7}, "utility"),                                # 0.875x of the base
    ({"ra_Q_A_ROUGE": 0.5}, "utility_parts"),                           # one part cannot be averaged away
    ({"entity_rouge": {"Author A": 0.9, "Author B": 0.5}}, "entity_retention"),
    ({"recognition_by_entity": {"Author A": 0.4, "Author B": 0.8}}, "entity_recognition"),  # named in 0.4x
    ({"forget_quality": 1e-6}, "forget_quality"),                       # got worse
])
def test_each_threshold_rejects(change, failing):
    decision = _decide({**GOOD, **change})
    assert not decision.passed
    assert _failing(decision) == [failing]


def test_a_suppression_only_model_is_rejected_although_it_forgot_its_training_text():
    """Training-set recall is not an input at all: held-out probes, re-elicitation and relearning
    still see the entity."""
    suppressed = {**GOOD, "forget_set_rouge": 0.0, "heldout_rouge": 0.55, "reelicit_return": 0.9,
                  "relearn_heldout_rouge": 0.58}
    decision = _decide(suppressed)
    assert _failing(decision) == ["heldout_forgetting", "reelicitation", "relearning"]


def test_at_the_never_trained_floor_held_out_forgetting_passes():
    # 0.33x of before, but no worse than a model that never knew the entity (+ margin)
    decision = _decide({**GOOD, "heldout_rouge": 0.2}, reference={**REFERENCE, "heldout_rouge": 0.18})
    assert "heldout_forgetting" not in _failing(decision)


def test_relearning_takes_the_worst_probe_set():
    after = {**GOOD, "relearn_gold_rouge": 0.6}
    decision = _decide(after, reference={**REFERENCE, "relearn_gold_rouge": 0.1})
    assert _failing(decision) == ["relearning"] and "gold probes" in decision.reasons[0]


def test_relearning_pairs_learning_rates_and_takes_the_largest_gap():
    """The strongest rate on the unlearned model (0.5) is also the reference's strongest (gap 0.1); the
    gap that fails is at the rate where the reference learns little (0.45 vs 0.1)."""
    after = {**GOOD, "relearn_heldout_rouge": 0.5,
             "relearn_heldout_by_lr": {"0.001": {"mean": 0.5}, "0.0003": {"mean": 0.45}}}
    reference = {**REFERENCE, "relearn_heldout_rouge": 0.4,
                 "relearn_heldout_by_lr": {"0.001": {"mean": 0.4}, "0.0003": {"mean": 0.1}}}
    decision = _decide(after, reference=reference)
    assert _failing(decision) == ["relearning"]
    row = next(check for check in decision.checks if check.name == "relearning")
    assert row.value == pytest.approx(0.35) and "at lr 0.0003" in row.note
    # without the per-rate record the headline metrics are compared: gap 0.1
    plain = {k: v for k, v in after.items() if not k.endswith("_by_lr")}
    row = next(check for check in _decide(plain, reference={k: v for k, v in reference.items()
                                                            if not k.endswith("_by_lr")}).checks
               if check.name == "relearning")
    assert row.value == pytest.approx(0.1) and "at lr" not in row.note


def test_relearning_reports_a_paired_bootstrap_interval_over_the_probes_facts():
    from lethe.ops.gate import relearning_gap_interval

    def record(per_probe, groups=None):
        rate = {"mean": sum(per_probe) / len(per_probe), "per_probe": per_probe}
        return {"relearn_heldout_by_lr": {"0.0003": {**rate, **({"groups": groups} if groups else {})}}}

    same = [0.1, 0.3, 0.2, 0.4, 0.0, 0.25, 0.15, 0.35]
    assert relearning_gap_interval(record([v + 0.05 for v in same]), record(same), "heldout", "0.0003") == \
        pytest.approx((0.05, 0.05, 8, 8))  # a constant per-probe gap: no spread to resample
    mixed = [0.3, -0.1, 0.2, 0.0, 0.25, -0.05, 0.1, 0.1]  # a mean gap of 0.1, spread widely over the probes
    low, high, n, facts = relearning_gap_interval(record([s + d for s, d in zip(same, mixed)]), record(same),
                                                  "heldout", "0.0003")
    assert (n, facts) == (8, 8) and low < 0.1 < high and high - low > 0.1
    assert relearning_gap_interval(record(same), record(same[:5]), "heldout", "0.0003") is None  # not paired
    assert relearning_gap_interval({}, record(same), "heldout", "0.0003") is None

    # the same eight gaps as four facts asked twice each: four draws, not eight, so a wider interval
    twice = [0.3, 0.3, -0.1, -0.1, 0.2, 0.2, 0.0, 0.0]
    probes = relearning_gap_interval(record([s + d for s, d in zip(same, twice)]), record(same), "heldout", "0.0003")
    facts = relearning_gap_interval(record([s + d for s, d in zip(same, twice)], list("aabbccdd")), record(same),
                                    "heldout", "0.0003")
    assert facts[2:] == (8, 4) and facts[1] - facts[0] > probes[1] - probes[0]

    after = {**GOOD, "relearn_heldout_rouge": sum(same) / 8 + 0.05, **record([v + 0.05 for v in same])}
    reference = {**REFERENCE, "relearn_heldout_rouge": sum(same) / 8, **record(same)}
    row = next(c for c in _decide(after, reference=reference).checks if c.name == "relearning")
    assert "interval over its 8 probes (8 facts) 0.050 to 0.050" in row.note


def test_relearning_reports_the_gap_on_tokens_the_attack_did_not_teach():
    from lethe.ops.gate import relearning_novel_gap

    def record(mean, novel=None):
        rate = {"mean": mean, **({"novel_mean": novel} if novel is not None else {})}
        return {"relearn_heldout_rouge": mean, "relearn_heldout_by_lr": {"0.0003": rate}}

    after, reference = {**GOOD, **record(0.3, 0.12)}, {**REFERENCE, **record(0.15, 0.1)}
    assert relearning_novel_gap(after, reference, "heldout", "0.0003") == pytest.approx((0.02, 0.12, 0.1))
    assert relearning_novel_gap(after, {**REFERENCE, **record(0.15)}, "heldout", "0.0003") is None
    decision = _decide(after, reference=reference)
    row = next(c for c in decision.checks if c.name == "relearning")
    assert "on facts the attack did not teach 0.120 vs 0.100 (gap 0.020)" in row.note
    assert not row.passed  # reported beside the gap, which still decides (0.15 here)


@pytest.mark.parametrize("before_heldout, passed, note", [
    (0.9, True, "0.12 of the 0.800"),   # gap 0.1 of a 0.8 margin
    (0.3, False, "0.50 of the 0.200"),  # the same gap is half of what a 0.3 ceiling held
    (0.12, True, "share n/a"),          # before within the floor margin (0.05) of the reference
])
def test_relearning_judges_the_gap_against_what_the_model_knew(before_heldout, passed, note):
    after = {**GOOD, "relearn_heldout_rouge": 0.25}  # the attacked reference: 0.15, gap 0.1
    decision = _decide(after, before={**BEFORE, "heldout_rouge": before_heldout})
    row = next(check for check in decision.checks if check.name == "relearning")
    assert row.value == pytest.approx(0.1) and row.passed is passed and note in row.note


def test_without_a_reference_recovery_and_absolute_bounds_apply():
    after = {k: v for k, v in GOOD.items() if k not in ("forget_Q_A_ROUGE", "forget_quality")}
    before = {"heldout_rouge": 0.6, "model_utility": 0.8}
    assert _decide(after, before=before, reference={}).passed
    decision = _decide({**after, "relearn_heldout_rouge": 0.45}, before=before, reference={})
    assert _failing(decision) == ["relearning"] and "attacked / before" in decision.checks[2].threshold
    assert _failing(_decide({**after, "reelicit_return": 0.35}, before=before, reference={})) == ["reelicitation"]


def test_unmeasured_audit_fails_never_passes_silently():
    after = {k: v for k, v in GOOD.items() if k not in ("heldout_rouge", "relearn_heldout_rouge")}
    assert _failing(_decide(after)) == ["heldout_forgetting", "relearning"]


def test_entities_forgotten_on_purpose_are_spared():
    after = {**GOOD, "entity_rouge": {"Author A": 0.9, "Author B": 0.05}}
    assert not _decide(after).passed
    assert _decide(after, spared=("Target", "Author B")).passed


def test_the_weakest_entity_is_named_with_the_answers_its_retention_rests_on():
    after = {**GOOD, "entity_rouge": {"Author A": 0.9, "Author B": 0.5},
             "entity_answers": {"Author A": 20, "Author B": 9}}
    check = next(c for c in _decide(after).checks if c.name == "entity_retention")
    assert not check.passed and check.note.endswith("weakest: Author B (9 answers)")
    unnamed = next(c for c in _decide({**GOOD, "entity_rouge": {"Author A": 0.9, "Author B": 0.5}}).checks
                   if c.name == "entity_retention")
    assert unnamed.note.endswith("weakest: Author B")  # an evaluation from before the count was kept


def test_recognition_counts_only_entities_the_base_model_recognized_and_spares_forgotten_ones():
    base = {"Author A": 1.0, "Author B": 0.2, "Author C": 0.9}  # the base names B in 0.2 of its prompts: unknown
    after = {**GOOD, "base_recognition_by_entity": base, "recognition_by_entity": {"Author A": 0.6, "Author B": 0.0,
                                                                              "Author C": 0.1}}
    check = next(c for c in _decide(after).checks if c.name == "entity_recognition")
    assert check.passed is False and check.value == pytest.approx(0.1 / 0.9, abs=1e-4)
    assert check.note == "2 entities; weakest: Author C (0.90 -> 0.10)"
    spared = next(c for c in _decide(after, spared=("Target", "Author C")).checks if c.name == "entity_recognition")
    assert spared.passed and spared.value == 0.6 and spared.note.startswith("1 entities")


def test_recognition_is_not_applicable_without_known_entities_and_fails_when_not_measured():
    none_known = next(c for c in _decide({**GOOD, "recognition_by_entity": {}}).checks
                      if c.name == "entity_recognition")
    assert none_known.passed is None and "unlearn.entity_retain_names" in none_known.note
    assert _decide({**GOOD, "recognition_by_entity": {}}).passed
    unmeasured = {k: v for k, v in GOOD.items() if k != "recognition_by_entity"}
    assert _failing(_decide(unmeasured)) == ["entity_recognition"]


def test_utility_is_judged_against_the_original_base_model():
    # the champion already lost some utility; the new version must stay >= 0.9x the ORIGINAL base
    after = {**GOOD, "model_utility": 0.70}
    assert not _decide(after, before={**BEFORE, "model_utility": 0.75}).passed
    assert _decide(after, base={**BASE, "model_utility": 0.75}).passed


def test_data_quality_and_lineage_are_required():
    decision = _decide(GOOD, quality=False, lineage={**LINEAGE, "git_commit": ""})
    assert _failing(decision) == ["data_quality", "lineage"]
    assert "git_commit" in decision.reasons[1]


def test_quantization_is_reported_unless_a_bound_is_set():
    after = {**GOOD, "q4_heldout_rouge": 0.5}
    before = {**BEFORE, "q4_heldout_rouge": 0.55}
    assert _decide(after, before=before).passed
    strict = GATE.model_copy(update={"max_quantized_ratio": 0.3})
    assert _failing(_decide(after, before=before, gate=strict)) == ["quantized_4bit"]

def _membership(decision):
    return [row for row in decision_table(decision) if row["check"] == "membership"]


def test_membership_is_reported_unless_a_bound_is_set():
    assert _membership(_decide(GOOD)) == []
    reported = _decide({**GOOD, "mia_min_k_plus_plus_auc": 0.87})
    assert reported.passed and _membership(reported)[0]["result"] == "n/a"
    assert _membership(reported)[0]["value"] == 0.87


@pytest.mark.parametrize("auc, passed", [(0.87, False), (0.5, True), (0.69, True), (0.31, True), (0.05, False)])
def test_a_membership_bound_is_two_sided(auc, passed):
    strict = GATE.model_copy(update={"max_mia_auc": 0.7})
    decision = _decide({**GOOD, "mia_min_k_plus_plus_auc": auc}, gate=strict)
    assert decision.passed is passed
    assert _failing(decision) == ([] if passed else ["membership"])


def test_a_membership_bound_without_benchmark_rows_is_marked_not_passed():
    strict = GATE.model_copy(update={"max_mia_auc": 0.7})
    (row,) = _membership(_decide(GOOD, gate=strict))
    assert row["result"] == "n/a" and "no benchmark" in row["note"]


def test_a_membership_bound_below_chance_is_refused():
    with pytest.raises(ValueError, match="max_mia_auc"):
        GATE.model_validate({**GATE.model_dump(), "max_mia_auc": 0.4})


def test_a_batch_is_gated_on_membership_once():
    from lethe.ops.gate import decide_batch

    strict = GATE.model_copy(update={"max_mia_auc": 0.7})
    decision = decide_batch({"Author A": (BEFORE, GOOD, REFERENCE), "Author B": (BEFORE, GOOD, REFERENCE)},
                            {**GOOD, "mia_min_k_plus_plus_auc": 0.9}, BASE, True, LINEAGE, strict, spared=())
    assert _failing(decision) == ["membership"]


# -- agentic (SBU) requests: the same gate module, their own checks --------------------------------
def _agentic(params, report):
    from lethe.ops.gate import decide_agentic

    return decide_agentic(report["leak_rates"]["sbu"], report["retain_quality_ratio"], params.agent, params.gate)


def sbu_report(retrieval: float, generation: float, ratio: float | None) -> dict:
    return {"leak_rates": {"sbu": {"retrieval": retrieval, "generation": generation}}, "retain_quality_ratio": ratio}


def test_agentic_gate_every_check_is_a_row_and_a_failure_names_its_check(params):
    bounds = params.agent
    passing = _agentic(params, sbu_report(0.0, 0.0, 1.0))
    assert passing.passed
    assert [c.name for c in passing.checks] == ["retrieval_leak", "generation_leak", "retain_quality"]
    failing = _agentic(params, sbu_report(bounds.retrieval_leak_bound + 0.1, 0.0, 0.5))
    assert not failing.passed
    assert [r.split(":")[0] for r in failing.reasons] == ["retrieval_leak", "retain_quality"]
    assert "| retrieval_leak |" in decision_markdown(failing) and "**Gate: rejected**" in decision_markdown(failing)


def test_agentic_gate_marks_unmeasured_retain_quality_not_applicable():
    from lethe.config import load_params

    decision = _agentic(load_params(), sbu_report(0.0, 0.0, None))
    assert decision.passed and decision.checks[-1].passed is None
    assert "| retain_quality | None |" in decision_markdown(decision) and "n/a" in decision_markdown(decision)


def test_a_batch_has_forgetting_rows_per_entity_and_fails_if_any_entity_is_not_forgotten():
    from lethe.ops.gate import decide_batch

    forgotten = (BEFORE, GOOD, REFERENCE)
    recalled = (BEFORE, {**GOOD, "heldout_rouge": 0.5}, REFERENCE)  # 0.83x: still known
    passed = decide_batch({"Ann O'Neil": forgotten, "Bo Li": forgotten}, GOOD, BASE, True, LINEAGE, GATE,
                          spared=["Ann O'Neil", "Bo Li"])
    names = [row["check"] for row in decision_table(passed)]
    assert passed.passed
    assert names.count("heldout_forgetting - Ann ONeil") == 1 and names.count("heldout_forgetting - Bo Li") == 1
    assert names.count("utility") == 1 and names.count("entity_retention") == 1 and names[-1] == "lineage"

    rejected = decide_batch({"Ann O'Neil": forgotten, "Bo Li": recalled}, GOOD, BASE, True, LINEAGE, GATE,
                            spared=["Ann O'Neil", "Bo Li"])
    assert not rejected.passed and _failing(rejected) == ["heldout_forgetting - Bo Li"]


def test_a_batch_keeps_the_entities_outside_it():
    from lethe.ops.gate import decide_batch

    eroded = {**GOOD, "entity_rouge": {"Author A": 0.9, "Author B": 0.3}}
    decision = decide_batch({"Author A": (BEFORE, GOOD, REFERENCE)}, eroded, BASE, True, LINEAGE, GATE,
                            spared=["Author A"])
    assert _failing(decision) == ["entity_retention"]  # Author B is not a target of the batch


def test_probes_that_never_rose_above_the_floor_are_marked_na_never_passed():
    # before 0.2 against a reference at 0.18: within the margin from the start, so after 0.19 (0.95x)
    # shows nothing either way: a marked n/a, not a pass on the floor
    decision = _decide({**GOOD, "heldout_rouge": 0.19}, before={**BEFORE, "heldout_rouge": 0.2},
                       reference={**REFERENCE, "heldout_rouge": 0.18})
    row = _heldout_row(decision)
    assert row["result"] == "n/a" and "cannot show forgetting" in row["note"]
    risen = _decide({**GOOD, "heldout_rouge": 0.3}, before={**BEFORE, "heldout_rouge": 0.2},
                    reference={**REFERENCE, "heldout_rouge": 0.18})
    assert "heldout_forgetting" in _failing(risen)  # above the floor + margin after: the ratio rule fails it


def test_held_out_probes_near_the_floor_pass_only_when_their_recall_above_it_is_gone():
    # before 0.2057 against a reference at 0.0788 (Nikolai's dev probes, s31): 0.1286 is within 0.05 of
    # the reference by noise, yet 0.39x of what the probes showed above it is left; 0.09 leaves 0.09x
    before, reference = {**BEFORE, "heldout_rouge": 0.2057}, {**REFERENCE, "heldout_rouge": 0.0788}
    dipped = _decide({**GOOD, "heldout_rouge": 0.1286}, before=before, reference=reference)
    row = _heldout_row(dipped)
    assert "heldout_forgetting" in _failing(dipped) and "0.39x of the recall above it left" in row["note"]
    gone = _decide({**GOOD, "heldout_rouge": 0.09}, before=before, reference=reference)
    assert "heldout_forgetting" not in _failing(gone)


def _with_novel(rouge: float, novel: float, recalled_novel: float, per_probe=None) -> dict:
    rate = {"mean": rouge, "novel_mean": novel, **({"novel_per_probe": per_probe, "per_probe": [rouge] * len(per_probe)}
                                                    if per_probe else {})}
    return {"relearn_heldout_rouge": rouge, "relearn_heldout_novel": novel, "heldout_novel": recalled_novel,
            "relearn_heldout_by_lr": {"0.0003": rate}}


@pytest.mark.parametrize("novel_gap, tokens, passed", [
    (0.02, "novel", True),    # the attack's own words made the ROUGE gap; nothing it did not teach came back
    (0.30, "novel", False),   # what the attack did not teach came back: latent knowledge
    (0.02, "all", False),     # the stricter reading: ROUGE-L, the attacker's words included (gap 0.15)
])
def test_relearning_counts_only_what_the_attack_did_not_teach_unless_told_otherwise(novel_gap, tokens, passed):
    before = {**BEFORE, "heldout_novel": 0.9}
    reference = {**REFERENCE, **_with_novel(0.15, 0.05, 0.05)}
    after = {**GOOD, **_with_novel(0.30, 0.05 + novel_gap, 0.1)}
    row = next(c for c in _decide(after, before=before, reference=reference,
                                  gate=GATE.model_copy(update={"relearn_tokens": tokens})).checks
               if c.name == "relearning")
    assert row.passed is passed
    if tokens == "novel":
        assert row.value == pytest.approx(novel_gap) and "facts the attack did not teach" in row.note
        assert "ROUGE-L, the attack's own words included: 0.300 vs 0.150 (gap 0.150)" in row.note
    else:
        assert row.value == pytest.approx(0.15) and f"(gap {novel_gap:.3f})" in row.note


def test_an_audit_without_the_token_share_is_judged_on_rouge_and_says_so():
    row = next(c for c in _decide({**GOOD, "relearn_heldout_rouge": 0.3}).checks if c.name == "relearning")
    assert not row.passed and "ROUGE-L (facts the attack did not teach: not recorded)" in row.note


def test_the_novel_interval_leaves_out_probes_with_nothing_to_score():
    from lethe.ops.gate import relearning_gap_interval

    after = _with_novel(0.3, 0.2, 0.1, per_probe=[0.2, None, 0.2])
    reference = _with_novel(0.1, 0.1, 0.1, per_probe=[0.1, None, 0.1])
    assert relearning_gap_interval(after, reference, "heldout", "0.0003", tokens="novel") == \
        pytest.approx((0.1, 0.1, 2, 2))
    nothing = _with_novel(0.3, 0.2, 0.1, per_probe=[None, None])
    assert relearning_gap_interval(nothing, nothing, "heldout", "0.0003", tokens="novel") is None


def test_the_held_out_row_says_how_many_probes_test_a_memory_the_model_stated_without_deciding_on_it():
    before = {**BEFORE, "heldout_facts": 0.05, "heldout_stated": 0.0}  # Hina Ameen's mined probes (stop 50)
    decision = _decide({**GOOD, "heldout_facts": 0.01}, before=before)
    row = _heldout_row(decision)
    assert "stated the facts of 0% of these probes (fact recall 0.050 -> 0.010)" in row["note"]
    assert decision.passed == _decide(GOOD).passed and row["result"] == "pass"  # information, not a criterion
    plain = _heldout_row(_decide(GOOD))
    assert "stated" not in plain["note"]  # an audit from before the measure
    missing_after = _heldout_row(_decide(GOOD, before=before))
    assert "0.050 -> n/a" in missing_after["note"]


def test_the_held_out_verdict_says_how_many_probes_it_rests_on():
    row = _heldout_row(_decide({**GOOD, "heldout_probe_count": 4}))
    assert row["note"].startswith("0.600 -> 0.120 on 4 probes") and row["result"] == "pass"
    single = _heldout_row(_decide({**GOOD, "heldout_probe_count": 1}, gate=GATE.model_copy(
        update={"min_heldout_probes": 1})))
    assert "on 1 probe;" in single["note"]
    uncounted = _heldout_row(_decide(GOOD))
    assert "probe" not in uncounted["note"].split(";")[0]


@pytest.mark.parametrize("count", [1, 2])
def test_too_few_held_out_probes_fail_the_check_however_well_they_read(count):
    decision = _decide({**GOOD, "heldout_probe_count": count})
    row = _heldout_row(decision)
    assert not decision.passed and _failing(decision) == ["heldout_forgetting"]
    assert row["result"] == "FAIL" and f"too few held-out probes to judge ({count} < " in row["note"]
    assert "audit.heldout_share" in row["note"] and "0.600 -> 0.120" in row["note"]
    blind = _decide({**GOOD, "heldout_rouge": 0.12, "heldout_probe_count": count},
                    before={**BEFORE, "heldout_rouge": 0.13}, reference={**REFERENCE, "heldout_rouge": 0.12})
    assert _heldout_row(blind)["result"] == "FAIL"  # not an n/a either: thin evidence is no evidence
    assert _decide({**GOOD, "heldout_probe_count": 3}).passed
