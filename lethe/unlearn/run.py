"""One unlearning run as the CLI, DVC and Prefect see it: checks, training, optional SAGE."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING

from lethe.config import Params, UnlearnParams
from lethe.errors import LetheError
from lethe.evaluate.suite import other_entities
from lethe.fileio import load_qa_file, read_jsonl
from lethe.layout import UNLEARN_REPORT, MineLayout
from lethe.unlearn.entity_retain import entity_retain
from lethe.unlearn.saturation import describe
from lethe.unlearn.swap_retain import swap_retain

if TYPE_CHECKING:
    from lethe.llm.backend import Backend


def authors_named_in(pairs: Sequence[tuple[str, str]]) -> set[str]:
    """TOFU authors whose full name appears in any question of `pairs` (a forget set names its target)."""
    from lethe.data import load_authors

    return {name for name in load_authors() if name and any(name in q for q, _ in pairs)}


def mined_anchors(forget_set: Path) -> set[str]:
    """The anchors a MAGE forget set was mined from: every MAGE row's graph path starts at its anchor (a
    batch's merged set has one per member). Empty for a set without paths (a baseline's, or one written
    by hand)."""
    paths = [row.get("path") for row in read_jsonl(forget_set)]
    return {path[0] for path in paths
            if isinstance(path, list) and path and isinstance(path[0], str) and path[0].strip()}


def request_targets(forget_set: Path, forget: Sequence[tuple[str, str]]) -> tuple[set[str], bool]:
    """(the entities the request forgets, whether they are its anchors). For a MAGE forget set, its anchors
    and the TOFU authors whose names match one (the training data's and evaluation's spelling). Another
    author a mined question also names is not a target: the model's recollections mix authors (Basil
    Mahfouz Al-Kuwaiti's mined set asks about Jordan Sinclair), and treating that author as forgotten left
    him with no retain rows and fell furthest of all. Without anchors, every TOFU author a question names
    (`authors_named_in`)."""
    anchors = mined_anchors(forget_set)
    if not anchors:
        return authors_named_in(forget), False
    return anchors | authors_matching(anchors, authors_named_in(forget)), True


def authors_matching(anchors: Iterable[str], names: Iterable[str | None]) -> set[str]:
    """The `names` (TOFU authors) that an anchor spells: either one contains the other, normalized."""
    from lethe.mining.extract import normalize

    wanted = [w for w in (normalize(a) for a in anchors) if w]
    return {name for name in names if name and any(normalize(name) in w or w in normalize(name) for w in wanted)}


def general_retain(model: Path, rows: int, seed: int, avoid_authors: AbstractSet[str] = frozenset(),
                   reserved: AbstractSet[tuple[str, str]] = frozenset(),
                   authors: str = "outside_forget_splits") -> list[tuple[str, str]]:
    """`rows` TOFU QA pairs of authors the model learned and no forget split contains (the general retain set).

    For a world model these are its retain authors; for any other model, TOFU authors 0-179. With
    `authors` "every_kept_author" a world model's forget-split authors count too (the other authors a
    benchmark request must keep, which the gate scores on their evaluation half): only `avoid_authors`
    are left out, so a request must name there every entity its champion chain already forgot. Only
    each author's trainable half (lethe.data.trainable_rows) is drawn, less the exact questions of
    the evaluation's retain rows (TOFU retain_perturbed), so no retention the evaluation scores is
    scored on a training row; authors named in `avoid_authors` (the request's targets, see
    `authors_named_in`) are left out too, and so are the `reserved` pairs (the adaptive budget's
    utility proxy: `utility_proxy_pairs`).
    """
    import random

    from lethe.data import load_perturbed, split_author_indices, trainable_rows
    from lethe.evaluate.suite import world_record

    if rows <= 0:
        return []
    record = world_record(model)
    known = {a["index"] for a in record["authors"]} if record else set(range(200))
    forgettable = set() if record and authors == "every_kept_author" else set(split_author_indices("forget10"))
    evaluated = {r.question for r in load_perturbed("retain")}
    pool = [(qa.question, qa.answer) for i in sorted(known - forgettable) for qa in trainable_rows(i)
            if qa.question not in evaluated and qa.author not in avoid_authors
            and (qa.question, qa.answer) not in reserved]
    if not pool:
        held_back = f" and the utility proxy's {len(reserved)} reserved rows" if reserved else ""
        raise LetheError(f"general_retain_rows is {rows}, but the model at {model} learned no TOFU author outside "
                         f"the forget splits and the evaluation's retain rows{held_back} (set it to 0)")
    return random.Random(seed).sample(pool, min(rows, len(pool)))


def entity_probes(model: Path, templates: Sequence[str], avoid_authors: AbstractSet[str]) -> list[str]:
    """The elicitation prompts about every other entity the model is known to hold: for a world model,
    its authors other than `avoid_authors`; none for any other model (its neighbor set is what it has)."""
    return [template.format(anchor=name) for name in other_entities(model, [], avoid_authors) for template in templates]


def distill_questions(params: Params, model: Path, forget: Sequence[tuple[str, str]],
                      targets: AbstractSet[str]) -> dict[str, list[str]]:
    """The prompts the unlearned teacher answers for distillation, beside the retain rows: the forget
    questions (unlearn.distill.forget_questions) and the elicitation prompts about every other entity
    the model holds (unlearn.distill.entity_probes)."""
    cfg = params.unlearn.distill
    return {"forget": [q for q, _ in forget] if cfg.forget_questions else [],
            "entities": entity_probes(model, params.elicit.prompts, targets) if cfg.entity_probes else []}


def utility_proxy_pairs(model: Path, neighbor: Sequence[tuple[str, str]], used: Sequence[tuple[str, str]],
                        rows: int, seed: int, avoid_authors: AbstractSet[str],
                        authors: str = "outside_forget_splits") -> list[tuple[str, str]]:
    """Questions the adaptive budget's utility proxy scores: TOFU QA of other authors the world model
    learned that training does not use; for any other model, neighbor-set rows. `run_unlearning` draws
    them before the general retain rows and keeps them out of those: a world with few such rows would
    otherwise give them all to training and leave the proxy the neighbor rows, which the model never
    knew (on the default world, 100 rows: `general_retain_rows 200` left a proxy scoring 0.13)."""
    from lethe.evaluate.suite import world_record

    taken = set(used)
    try:
        pool = general_retain(model, 10_000, seed + 1, avoid_authors, authors=authors) if world_record(model) else []
    except LetheError:  # a world whose every other author is an evaluation author (the tiny world)
        pool = []
    pool = [pair for pair in pool if pair not in taken]
    return pool[:rows] if pool else list(neighbor)[:rows]


def budget_fixed_because(params: Params, forget_set: Path) -> str | None:
    """Why the adaptive budget cannot run for this forget set (unlearn.eval_every 0, or no dev probes
    beside it), or None where it can."""
    if params.unlearn.eval_every <= 0:
        return "unlearn.eval_every is 0"
    if not MineLayout.beside(forget_set).dev_set.is_file():
        return "no dev_set.jsonl beside the forget set"
    return None


def budget_runs(params: Params, forget_set: Path) -> bool:
    """Whether the adaptive budget runs: unlearn.eval_every > 0 and dev probes beside the forget set."""
    return budget_fixed_because(params, forget_set) is None


def budget_mode(params: Params, forget_set: Path, dev: Sequence[tuple[str, str]]) -> dict:
    """Whether the budget was adaptive, on how many dev probes, and why not where it was fixed: a fixed
    budget trains unlearn.max_steps whatever happens to the entity, so a reader must see it said plainly."""
    why = budget_fixed_because(params, forget_set)
    if why is None and not dev:
        why = "the held-out split kept no dev probe (see synthesis.json)"
    return {"adaptive": why is None, "dev_probes": len(dev), "fixed_because": why}


def budget_probe(params: Params, model: Path, forget_set: Path, neighbor: Sequence[tuple[str, str]],
                 retain: Sequence[tuple[str, str]], avoid_authors: AbstractSet[str],
                 reference: str | Path | Backend | None = None,
                 proxy: Sequence[tuple[str, str]] | None = None, dev: Sequence[tuple[str, str]] | None = None,
                 train: Sequence[tuple[str, str]] = ()):
    """The adaptive budget's probe (dev-probe recall, utility proxy), or None for a fixed budget (no
    dev_set.jsonl beside the forget set, or unlearn.eval_every 0). With a `reference` that never knew
    the entity (a path, or that model already loaded), every point also carries that model's dev recall
    (`dev_floor`, scored once). The proxy's rows are `proxy` where given, else drawn here
    (`utility_proxy_pairs`, outside `retain`); the dev probes are `dev` where given, else read beside the
    forget set. With `train` rows (`train_probe_pairs`), every point also carries `train_facts`: the share
    of their answers' facts (`lethe.evaluate.audit.fact_recall`) that the greedy answers still hold."""
    if not budget_runs(params, forget_set):
        return None
    dev = dev_probes(forget_set) if dev is None else dev
    if not dev:
        return None
    from transformers import AutoTokenizer

    from lethe.evaluate.audit import fact_recall, recall
    from lethe.llm.backend import Backend

    if proxy is None:
        proxy = utility_proxy_pairs(model, neighbor, retain, params.unlearn.utility_proxy_rows, params.unlearn.seed,
                                    avoid_authors, params.unlearn.general_retain_authors)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokens, batch = params.audit.max_new_tokens, params.backend.batch_size
    if isinstance(reference, (str, Path)):
        reference = Backend.from_params(reference, params.backend)
    floor = {"dev_floor": recall(reference, dev, tokens) or 0.0} if reference is not None else {}

    def probe(trained) -> dict[str, float]:
        backend = Backend(trained, tokenizer, batch)
        values = {"dev_rouge": recall(backend, dev, tokens) or 0.0, "utility": recall(backend, proxy, tokens) or 0.0,
                  **floor}
        if train:
            values["train_facts"] = fact_recall(backend, train, tokens) or 0.0
        return values

    return probe


def train_probe_pairs(settings: UnlearnParams, forget: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The training forget rows the budget's stop_train_ratio check scores (none when it is off): up to
    stop_train_rows distinct rows, drawn with the unlearning seed."""
    if settings.stop_train_ratio >= 1.0:
        return []
    rows = list(dict.fromkeys(forget))
    return random.Random(settings.seed).sample(rows, min(settings.stop_train_rows, len(rows)))


def dev_probes(forget_set: Path) -> list[tuple[str, str]]:
    """The dev probes MAGE set aside beside the forget set (the adaptive budget's; never trained on)."""
    return load_qa_file(MineLayout.beside(forget_set).dev_set, "dev set")


def budget_relearn(params: Params, model: Path, forget_set: Path, forget: Sequence[tuple[str, str]],
                   reference: str | Path | Backend | None, dev: Sequence[tuple[str, str]] | None = None):
    """The adaptive budget's relearning check (lethe.unlearn.budget_relearn) when unlearn.stop_relearn_gap
    is set, else None; it attacks the dev probes (`dev`, else read beside the forget set). `reference`: a
    path, or its reference_backend."""
    if params.unlearn.stop_relearn_gap <= 0:
        return None
    from transformers import AutoTokenizer

    from lethe.unlearn.budget_relearn import relearn_check

    return relearn_check(params, dev_probes(forget_set) if dev is None else dev, forget, reference,
                         AutoTokenizer.from_pretrained(model))


def budget_reelicit(params: Params, model: Path, forget_set: Path, reference: str | Path | Backend | None):
    """The adaptive budget's re-elicitation check (lethe.unlearn.budget_reelicit) when unlearn.stop_reelicit is
    on, else None; it elicits the forget set's anchor on the model being trained, against `reference` (a
    path, or its reference_backend) where there is one."""
    if not params.unlearn.stop_reelicit:
        return None
    from transformers import AutoTokenizer

    from lethe.unlearn.budget_reelicit import reelicit_check
    from lethe.unlearn.budget_relearn import reference_backend

    never = reference_backend(params, reference) if reference is not None else None
    return reelicit_check(params, forget_set, mined_anchors(forget_set), never, AutoTokenizer.from_pretrained(model),
                          model)


def forget_focus(params: Params, model: Path, targets: AbstractSet[str], forget_questions: Sequence[str]):
    """The forget term's token mask settings (lethe.unlearn.specific_tokens.ForgetFocus) when
    unlearn.specific_tokens is on, else None: the request's targets (`request_targets`), and the others
    swapped in for them (unlearn.specific_swap_names, else `specific_swaps` of a world model's other
    authors, seeded, none a forget question names where the targets are not known by their anchors). A
    clear error when there is no one to swap in."""
    import random

    from lethe.unlearn.specific_tokens import ForgetFocus

    cfg = params.unlearn
    if not cfg.specific_tokens:
        return None
    names = tuple(sorted(targets))
    swaps = list(cfg.specific_swap_names)
    if not swaps:
        others = other_entities(model, [], set(names), forget_questions)
        swaps = random.Random(cfg.seed).sample(others, min(cfg.specific_swaps, len(others)))
    if not swaps:
        raise LetheError(f"unlearn.specific_tokens renames the entity after people the model at {model} knows, "
                         "and it names none (not a world model): list them in unlearn.specific_swap_names, or set "
                         "unlearn.specific_tokens to false")
    return ForgetFocus(names, tuple(swaps), cfg.specific_margin, cfg.specific_aggregate)


def training_summary(trained: dict) -> dict:
    """What a request's result says about its training: steps, the kept checkpoint, whether the adaptive
    budget met its dev target, and (lethe.unlearn.saturation) where a bounded forget term stopped pushing."""
    keys = ("steps", "chosen_step", "stopped_by", "budget_met", "saturation", "budget")
    fixed = (trained.get("budget") or {}).get("fixed_because")
    notes = [f"fixed budget of {trained.get('steps')} steps: {fixed}" if fixed else None,
             describe(trained.get("saturation"), bool(trained.get("budget_met")))]
    return {**{k: trained.get(k) for k in keys}, "note": "; ".join(n for n in notes if n) or None}


def check_validation(forget_set: Path, allow_unvalidated: bool) -> str:
    """Refuse a forget set whose validation report (validation/validation.json beside it) failed."""
    report = MineLayout.beside(forget_set).validation
    if not report.is_file():
        if allow_unvalidated:
            return "unvalidated"
        raise LetheError(f"no validation report beside {forget_set} (run `lethe mine` or pass --allow-unvalidated)")
    outcome = json.loads(report.read_text())
    if not outcome.get("success"):
        from lethe.supervision.validate import describe_failures

        raise LetheError(f"the forget set failed validation: {describe_failures(outcome)}")
    return "passed"


def run_unlearning(params: Params, model: Path, forget_set: Path, neighbor_set: Path | None, method: str | None,
                   out_dir: Path, sage: bool, allow_unvalidated: bool = False, on_step=None,
                   reference: str | Path | None = None, forgotten: Sequence[str] = ()) -> dict:
    """Validate inputs, train the adapter (resumable), optionally sanitize it with SAGE.

    `forgotten`: the entities the starting model's champion chain already forgot; no retain row is
    drawn from their TOFU answers (unlearn.general_retain_authors every_kept_author would teach them back).
    `reference`: a model that never knew the entity, whose dev recall is the adaptive budget's floor;
    by default the world's retain model when `model` is a world model and the forget set's authors are
    its forget authors (a request starting from a champion passes its base model's)."""
    from lethe.data import load_authors
    from lethe.evaluate.suite import never_trained_reference
    from lethe.unlearn.trainer import unlearn

    validation = check_validation(forget_set, allow_unvalidated)
    forget = load_qa_file(forget_set, "forget set")
    neighbor = load_qa_file(neighbor_set, "neighbor set") if neighbor_set else []
    targets, anchored = request_targets(forget_set, forget)
    # without anchors, an entity a forget question names may be the target: keep it out of the self-retain rows
    named_by_forget = [] if anchored else [q for q, _ in forget]
    settings = params.unlearn
    adaptive = budget_runs(params, forget_set)
    # an anchor the chain forgot, however it was spelled, keeps its TOFU author out of the retain rows
    kept_out = targets | set(forgotten) | authors_matching(forgotten, load_authors())
    proxy = (utility_proxy_pairs(model, neighbor, [], settings.utility_proxy_rows, settings.seed, kept_out,
                                 settings.general_retain_authors) if adaptive else [])
    general = general_retain(model, settings.general_retain_rows, settings.seed, kept_out, reserved=set(proxy),
                             authors=settings.general_retain_authors)
    anchors = entity_retain(params, model, targets, named_by_forget)
    swap = swap_retain(params, model, targets, named_by_forget)
    retain = neighbor + general + anchors
    reference = reference or never_trained_reference(model, targets)
    probe = relearn = reelicit = None
    dev = dev_probes(forget_set) if adaptive else []
    if adaptive:
        from lethe.unlearn.budget_relearn import reference_backend

        # the relearning check fine-tunes the reference in float32, as the audit does: one load serves every check
        never = reference_backend(params, reference) if reference and dev and \
            (settings.stop_relearn_gap > 0 or settings.stop_reelicit) else reference
        probe = budget_probe(params, model, forget_set, neighbor, retain, kept_out, never, proxy, dev,
                             train_probe_pairs(settings, forget))
        relearn = budget_relearn(params, model, forget_set, forget, never, dev) if probe is not None else None
        reelicit = budget_reelicit(params, model, forget_set, never) if probe is not None else None
    focus = forget_focus(params, model, targets, named_by_forget)
    result = unlearn(model, forget, retain, params.unlearn, out_dir, method, params.backend.device, on_step,
                     probe=probe, dtype=params.backend.dtype, relearn_check=relearn, focus=focus, swap=swap,
                     reelicit_check=reelicit)
    result["validation"] = validation
    result["budget"] = budget_mode(params, forget_set, dev)
    # a world may hold fewer other authors' rows than asked for: record both
    result["general_retain_rows"] = {"asked": params.unlearn.general_retain_rows, "used": len(general),
                                     "authors": settings.general_retain_authors, "kept_out": sorted(kept_out)}
    result["entity_retain_rows"] = {"asked": params.unlearn.entity_retain_rows, "used": len(anchors)}
    if sage or params.sage.enabled:
        from lethe.unlearn.sage import sanitize_adapter

        report = sanitize_adapter(model, result["adapter_path"], retain, forget, params.sage, out_dir / "adapter_sage")
        result.update(raw_adapter_path=result["adapter_path"], adapter_path=report["adapter_path"],
                      sage={k: v for k, v in report.items() if k != "layers"}, sage_layers=report["layers"])
    if params.unlearn.distill.alpha > 0:
        from lethe.unlearn.distill import distill_adapter

        cfg = params.unlearn.distill
        questions = distill_questions(params, model, forget, targets)
        report = distill_adapter(model, result["adapter_path"], retain, questions["forget"] + questions["entities"],
                                 cfg, out_dir / "adapter_distilled", params.backend.device, params.unlearn.seed,
                                 params.audit.max_new_tokens, params.unlearn.threads)
        report.update(entity_probes=len(questions["entities"]), forget_questions=len(questions["forget"]))
        result.update(undistilled_adapter_path=result["adapter_path"], adapter_path=report["adapter_path"],
                      distill=report)
    (out_dir / UNLEARN_REPORT).write_text(json.dumps({k: v for k, v in result.items() if k != "curves"}, indent=1))
    return result
