"""params.yaml parsed into strict typed models.

Every section is a pydantic model that forbids unknown keys and refuses type coercion, so a typo
or a wrong type fails at load time with the offending key named, never half-way through a run.
Section name = DVC stage = task module = Prefect task name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from lethe.errors import ConfigError, LetheError

DEFAULT_PARAMS = Path(__file__).resolve().parent.parent / "params.yaml"


class Strict(BaseModel):
    """Base for every section: unknown keys and silent type coercion are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class ModelShape(Strict):
    """Llama architecture of a world model."""

    vocab_size: int = Field(gt=256)
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    max_len: int = Field(gt=16)


class TrainRecipe(Strict):
    """Optimisation of a world model (loss on answer tokens only)."""

    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0)
    warmup_ratio: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    threads: int = Field(gt=0)


class WorldSize(Strict):
    """One named world: which authors it learns and how big the model is."""

    authors: str
    forget_authors: str
    general_knowledge: int = Field(ge=0, description="real-author + world-fact QA pairs mixed in")
    model: ModelShape
    train: TrainRecipe

    @field_validator("authors", "forget_authors")
    @classmethod
    def _ranges_parse(cls, value: str) -> str:
        from lethe.data import parse_author_spec

        try:
            parse_author_spec(value)
        except LetheError as exc:  # pydantic then names the key
            raise ValueError(str(exc)) from exc
        return value


class WorldParams(Strict):
    seed: int
    output_dir: str
    sizes: dict[str, WorldSize]


class BackendParams(Strict):
    """How prompts reach a model: device, batch size, sampling defaults."""

    device: Literal["auto", "cpu", "cuda"]
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights' dtype: auto = bfloat16 on CUDA, float32 on CPU")
    max_memory_gb: float | None = Field(None, gt=0, description="cap on the memory a model may take (default: what "
                                        "the device has free); a larger model is refused before any work")
    batch_size: int = Field(gt=0)
    max_new_tokens: int = Field(gt=0)
    temperature: float = Field(gt=0)
    top_p: float = Field(gt=0, le=1)
    score_cache: bool = Field(True, description="keep the greedy answers and log-probs of unmodified models (the "
                              "starting and base models, the world's retain model; the entity retain rows' answers) "
                              "by model hash, under registry.workdir/_scores")


def check_template(template: str, allowed: set[str], required: set[str]) -> str:
    """A prompt template may name only `allowed` fields and must name `required` ones."""
    import string

    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"prompt template {template!r} is malformed: {exc}") from exc
    unknown, missing = fields - allowed, required - fields
    if unknown:
        raise ValueError(f"prompt template {template!r} uses unknown field(s) "
                         f"{', '.join('{' + f + '}' for f in sorted(unknown))}; allowed: "
                         f"{', '.join('{' + f + '}' for f in sorted(allowed))}")
    if missing:
        needed = ", ".join("{" + f + "}" for f in sorted(missing))
        raise ValueError(f"prompt template {template!r} must contain {needed}")
    return template


class ElicitParams(Strict):
    """MAGE step 1: N sampled recalls of the anchor."""

    samples: int = Field(gt=0, description="N responses per anchor")
    prompts: list[str] = Field(min_length=1, description="templates with {anchor}")
    temperature: float = Field(gt=0)
    top_p: float = Field(gt=0, le=1)
    max_new_tokens: int = Field(gt=0)
    seed: int

    @field_validator("prompts")
    @classmethod
    def _templates_name_the_anchor(cls, value: list[str]) -> list[str]:
        return [check_template(t, {"anchor"}, {"anchor"}) for t in value]


class ScoreParams(Strict):
    """MAGE step 2: keep memories with strength s(v) >= tau."""

    tau: float = Field(gt=0, le=1)
    min_recognition: float = Field(ge=0, le=1, description="share of recalls that must name the anchor")


class ExpandParams(Strict):
    """MAGE step 3: target-conditioned hop expansion."""

    hops: int = Field(ge=0, description="K: hops beyond the anchor's own recall")
    samples: int = Field(gt=0, description="N responses per expanded node")
    prompts: list[str] = Field(min_length=1, description="templates with {anchor} and {node}")
    prompts_by_kind: dict[Literal["title", "date", "entity", "concept"], list[str]] = Field(
        default_factory=dict, description="templates for nodes of one kind (default: `prompts`)")
    max_nodes_per_hop: int = Field(gt=0)
    adaptive_stop: bool
    stop_threshold: float = Field(ge=0, le=1, description="min share of responses pointing back to the anchor")
    max_model_calls: int = Field(gt=0, description="budget of sampled responses for the whole graph")

    @field_validator("prompts_by_kind")
    @classmethod
    def _kind_lists_not_empty(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for kind, templates in value.items():
            if not templates:
                raise ValueError(f"prompts_by_kind.{kind} is empty")
            cls._templates_name_both(templates)
        return value

    @field_validator("prompts")
    @classmethod
    def _templates_name_both(cls, value: list[str]) -> list[str]:
        return [check_template(t, {"anchor", "node"}, {"anchor", "node"}) for t in value]

    def templates_for(self, kind: str) -> list[str]:
        """Expansion templates for a node of this kind."""
        return self.prompts_by_kind.get(kind, self.prompts)  # type: ignore[call-overload]


class SampleParams(Strict):
    """MAGE step 4: strength-weighted random walks."""

    walks: int = Field(gt=0, description="R")
    max_length: int = Field(gt=0, description="L (edges)")
    alpha: float = Field(ge=0, description="visit penalty exponent")
    eta: float = Field(ge=0, le=1, description="min mean edge strength of a kept path")
    seed: int


class SynthesizeParams(Strict):
    """MAGE step 5: forget and neighbor QA sets."""

    mode: Literal["auto", "extractive", "generative"]
    neighbor_nodes: int = Field(ge=0, description="graph neighbors elicited for the neighbor set")
    neighbor_samples: int = Field(gt=0)
    max_forget: int = Field(gt=0)
    max_neighbor: int = Field(ge=0)
    sentences_per_edge: int = Field(2, gt=0, description="extractive mode: at most this many of the model's "
                                    "own sentences supporting one edge become forget rows")
    drop_about_others: bool = Field(True, description="drop forget rows that name another entity the model must "
                                    "keep and never the target (that entity's memory, not the target's)")
    greedy_rows: bool = Field(True, description="MAGE: ask every elicitation question once more greedily and add "
                              "a forget row for each answer naming a memory (lethe.supervision.greedy): what the "
                              "model states when asked, which the held-out probes prefer")
    greedy_min_confidence: float = Field(0.7, ge=0, lt=1, description="a greedy row is kept only where the model "
                                         "gives its answer with at least this per-token probability (geometric "
                                         "mean): a low-confidence answer is rewritten by the smallest update")
    sampled_min_confidence: float = Field(0.0, ge=0, lt=1, description="a sampled (not greedy) forget row is kept "
                                          "only where the model gives its answer, after the row's question, with "
                                          "at least this per-token probability (geometric mean); 0: every row. A "
                                          "small model's samples are often garbled, mixing in other entities' "
                                          "words, and unlearning them costs what the model must keep")
    seed: int


class ValidateParams(Strict):
    """MAGE step 6: data-quality checks (Great Expectations)."""

    min_forget_rows: int = Field(gt=0)
    min_neighbor_rows: int = Field(ge=0)
    min_answer_chars: int = Field(ge=1)
    max_answer_chars: int = Field(gt=1)
    max_question_chars: int = Field(gt=1)
    forget_mention_mostly: float = Field(gt=0, le=1, description="share of forget questions naming the target")
    strong_node_strength: float = Field(gt=0, le=1)
    min_strong_coverage: float = Field(ge=0, le=1)


class LoraParams(Strict):
    """The LoRA adapter that carries the unlearning update."""

    r: int = Field(gt=0)
    alpha: int = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    target_modules: Literal["auto"] | list[str] = Field(
        description="auto: every attention and MLP projection of the architecture (fused and Conv1D ones "
        "included, never embeddings or the output head); or a list of leaf module names")
    layers: list[int] | None = Field(None, description="adapt only these transformer blocks (0: the first); "
                                     "null: every block. A chained request keeps its starting adapter's blocks")

    @field_validator("target_modules")
    @classmethod
    def _named(cls, value):
        if isinstance(value, list) and (not value or not all(isinstance(v, str) and v for v in value)):
            raise ValueError("target_modules must be `auto` or a non-empty list of module names")
        return value

    @field_validator("layers")
    @classmethod
    def _blocks(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 0):
            raise ValueError("layers must be null (every block) or a non-empty list of block indices >= 0")
        return sorted(set(value)) if value is not None else None


class DistillParams(Strict):
    """Noise-then-distill after training (lethe.unlearn.distill): the student starts from the unlearned
    projection weights mixed with a fresh initialization and learns the unlearned model's outputs."""

    alpha: float = Field(0.0, ge=0, le=1, description="share of fresh initialization in the student's projection "
                         "weights (0: off)")
    steps: int = Field(300, gt=0, description="distillation steps (KL to the unlearned model, every token)")
    lr: float = Field(0.001, gt=0)
    batch_size: int = Field(16, gt=0)
    temperature: float = Field(1.0, gt=0)
    entity_probes: bool = Field(True, description="add the elicitation prompts about every other entity the "
                                "model holds (a world model's other authors), answered by the unlearned model")
    forget_questions: bool = Field(True, description="distill on the forget questions too, with the unlearned "
                                   "model's suppressed answers; false: the student never sees a prompt about the "
                                   "entity, so none of the teacher's distribution there reaches it")
    answers: int = Field(1, gt=0, description="the unlearned model's answers per question: its greedy answer, and "
                         "answers - 1 more sampled at sample_temperature (more of what it knows reaches the student)")
    sample_temperature: float = Field(0.7, gt=0)


class MethodConfig(Strict):
    """Hyperparameters every unlearning method has: the weights of its forget and retain terms."""

    forget_weight: float = Field(1.0, ge=0)
    retain_weight: float = Field(1.0, ge=0, description="retain term (ignored by methods without one)")


class NpoConfig(MethodConfig):
    """NPO family: the inverse temperature of the preference loss."""

    beta: float = Field(0.1, gt=0)


class SimNpoConfig(NpoConfig):
    """SimNPO: NPO without a reference model, with a reward margin."""

    gamma: float = Field(0.0, ge=0)


class SraConfig(MethodConfig):
    """SRA: stochastic reference alignment toward freshly drawn near-uniform distributions."""

    reference_noise: float = Field(1.0, gt=0, description="logit std of the sampled near-uniform references")


class RmuConfig(MethodConfig):
    """RMU: representation misdirection. The forget rows' activations at one layer are pushed toward a
    fixed random direction, the retain rows' held at the reference model's (the weight is the retain
    term's, as in RMU's alpha, on a scale-free relative error)."""

    layer: int = Field(0, ge=0, description="hidden state to steer (1: after the first block); 0: a third of the "
                       "way up, at least 1")
    steering: float = Field(5.0, gt=0, description="the target's norm, in multiples of the reference's mean "
                            "activation norm on the forget batch at that layer (adaptive RMU's beta)")
    seed: int = Field(0, description="seed of the random direction")


# Each registered method's config class, by its params.yaml name (lethe.unlearn.methods.REGISTRY
# holds the same names, each Method naming this class; a test keeps the two equal). Kept here so
# that loading params.yaml rejects a typo or a wrong hyperparameter without importing torch.
METHOD_CONFIGS: dict[str, type[MethodConfig]] = {
    "ga": MethodConfig, "ga_gd": MethodConfig, "ga_kl": MethodConfig,
    "npo": NpoConfig, "npo_gd": NpoConfig, "npo_kl": NpoConfig, "simnpo": SimNpoConfig, "sra": SraConfig,
    "rmu": RmuConfig,
}
METHOD_NAMES = tuple(METHOD_CONFIGS)


def _some_learning_rate(value: float | list[float]) -> float | list[float]:
    if isinstance(value, list) and not value:
        raise ValueError("an empty list: give one learning rate or several")
    return value


LearningRates = Annotated[PositiveFloat | list[PositiveFloat], AfterValidator(_some_learning_rate)]
"""One learning rate, or several (a sweep); the field's name is in pydantic's error location."""


def _learning_rates(value: float | list[float]) -> list[float]:
    return list(dict.fromkeys(value if isinstance(value, list) else [value]))


class UnlearnParams(Strict):
    """Unlearning: method, optimisation, early stop, checkpoints."""

    method: str
    lr: float = Field(gt=0)
    max_steps: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    retain_batch_size: int = Field(0, ge=0, description="retain rows a step, for methods with a retain term (0: "
                                   "batch_size); more anchors every retain row more often at the cost of a "
                                   "larger retain forward/backward")
    retain_replay_share: float = Field(0.0, ge=0, lt=1, description="share of each retain batch drawn from the "
                                       "retain rows whose NLL rose most since the start (lethe.unlearn.retain_replay); "
                                       "0: off")
    retain_replay_every: int = Field(20, gt=0, description="retain replay: rescore every retain row this often")
    retain_dual_rate: float = Field(0.0, ge=0, description="the retain term's weight by dual ascent on the "
                                    "adaptive budget's utility proxy (lethe.unlearn.retain_dual): after each "
                                    "budget point x exp(rate x (stop_utility_ratio - utility ratio)), within "
                                    "[1, retain_dual_max]; 0: off")
    retain_dual_max: float = Field(8.0, ge=1, description="retain_dual_rate: the largest multiplier")
    seed: int
    methods: dict[str, SerializeAsAny[MethodConfig]] = Field(default_factory=dict, description="each method's own "
                                             "hyperparameters, by name (a method not listed has its defaults)")
    forget_nll_bound: float = Field(gt=0, description="early stop once the training forget NLL exceeds this "
                                    "(a training-text criterion: a safety stop only, never evidence)")
    eval_every: int = Field(ge=0, description="adaptive budget: score the dev probes and the utility proxy every "
                            "this many steps and stop at the first checkpoint that meets both targets (0: off)")
    stop_forget_ratio: float = Field(gt=0, le=1, description="dev-probe ROUGE after / before that ends training")
    stop_floor_margin: float = Field(0.05, ge=0, description="where a model that never knew the entity exists, the "
                                     "ratio counts the dev ROUGE above its score (such a model still shares an "
                                     "answer's generic words), if the probes scored more than this above it before")
    stop_train_ratio: float = Field(1.0, gt=0, le=1, description="adaptive budget: the facts of up to "
                                    "stop_train_rows training forget rows (answer tokens neither in the question nor "
                                    "function words) found in the greedy answers, after / before, must also be at "
                                    "most this at a stop: a "
                                    "dip of a few dev probes does not end training while what it trains on is "
                                    "still known (a necessary condition, never evidence; 1: not checked)")
    stop_train_rows: int = Field(32, gt=0, description="training forget rows the stop_train_ratio check scores")
    stop_utility_ratio: float = Field(gt=0, le=1, description="utility proxy after / before a stop must keep")
    utility_proxy_rows: int = Field(gt=0, description="retain questions scored by the adaptive budget's utility proxy")
    stop_confirmations: int = Field(1, gt=0, description="adaptive budget: the dev target must hold at this many "
                                    "consecutive checkpoints before training stops (the last one is kept)")
    stop_relearn_gap: float = Field(0.0, ge=0, description="adaptive budget: a point that meets the dev and "
                                    "utility targets must also keep the dev probes' recall after a simulated "
                                    "relearning attack (the audit's, on other forget rows) within this of the "
                                    "never-trained reference's after the same attack (0: not checked; needs a "
                                    "reference)")
    stop_relearn_share: float = Field(0.15, gt=0, description="... and within this share of what the starting "
                                      "model knew beyond the reference on the dev probes, where that was more "
                                      "than stop_floor_margin (the gate's max_relearn_share)")
    stop_reelicit: bool = Field(False, description="adaptive budget: a point that meets its other targets must also "
                                "keep the entity's strong memories from coming back when it is elicited again (the "
                                "gate's re-elicitation bound, on a draw of its own: lethe.unlearn.budget_reelicit)")
    min_steps: int = Field(0, ge=0, description="adaptive budget: no stop before this step (a neuron reset meets "
                           "the dev target at once and needs steps of repair)")
    balance_gradients: bool = Field(False, description="rescale the retain gradient to retain_weight x the forget "
                                    "gradient's norm every step (methods with a retain term)")
    sam_rho: float = Field(0.0, ge=0, description="sharpness-aware forgetting: take the forget gradient at the "
                           "worst point within this L2 radius of the trainable weights, the way relearning "
                           "would move them (0: off; costs one more forward/backward of the forget batch)")
    sam_space: Literal["adapter", "model"] = Field("adapter", description="where the sharpness-aware point is "
                                                   "taken: adapter = an L2 step of sam_rho over the trainable "
                                                   "weights (Fan et al.); model = every weight of the adapted "
                                                   "model moved by sam_rho x sign(gradient), the first step of "
                                                   "an Adam fine-tune of the whole model (the relearning "
                                                   "attack); needs a full-model gradient per step")
    inner_attack_steps: int = Field(0, ge=0, description="relearning-aware forgetting (first-order "
                                    "meta-unlearning): take the forget gradient after this many AdamW steps of a "
                                    "simulated relearning attack that fine-tunes every model weight on "
                                    "inner_attack_rows other forget rows (0: off; costs that many full-model "
                                    "forward/backward passes per step)")
    inner_attack_lr: LearningRates = Field(
        3e-4, description="the simulated attack's learning rate; a list draws one of them for each simulated "
                          "attack (seeded by the step), so the adapter is shaped against every rate the audit's "
                          "attack sweeps, not fitted to one")
    inner_attack_rows: int = Field(8, gt=0, description="forget rows the simulated attack trains on, drawn each "
                                   "step from those outside the step's forget batch")
    inner_attack_every: int = Field(1, gt=0, description="simulate the attack afresh every this many steps and "
                                    "reuse its weight shift in between (1: every step; a divisor of "
                                    "checkpoint_every, so a resumed run attacks where the whole run did)")
    disruption_mask: bool = Field(False, description="disruption masking (MUDMAN): the forget gradient moves only "
                                  "the coordinates where it agrees in sign with a running average of the retain "
                                  "gradient (methods with a retain term)")
    disruption_momentum: float = Field(0.9, ge=0, lt=1, description="the retain average's EMA momentum (0: the "
                                       "step's own retain gradient)")
    checkpoint_every: int = Field(gt=0)
    keep_checkpoints: bool = Field(False, description="keep each checkpoint's adapter (not its optimizer state) under "
                                   "the run's step_adapters/ when it finishes, to judge or average them afterwards "
                                   "(bench/retention_rows.py --adapters, bench/average_checkpoints.py); off: deleted")
    average_last: int = Field(1, ge=1, description="the kept adapter is the mean of the weight updates of the kept "
                              "step and the average_last - 1 checkpoints before it, average_every steps apart "
                              "(lethe/unlearn/averaging.py; 1: the kept step's alone)")
    average_every: int = Field(10, gt=0, description="average_last: the steps between averaged checkpoints (a "
                               "multiple of checkpoint_every)")
    gradient_checkpointing: bool | Literal["auto"] = Field(description="recompute activations in the backward "
                                                           "pass (auto: on CUDA, where memory is the limit)")
    general_retain_rows: int = Field(ge=0, description="extra retain QA: TOFU rows of learned non-forget authors")
    general_retain_authors: Literal["outside_forget_splits", "every_kept_author"] = Field(
        "outside_forget_splits", description="whose TOFU rows the general retain set and the budget's utility proxy "
        "draw: authors outside TOFU's forget splits, or every author the model learned but the request's targets "
        "and the entities its champion chain already forgot (each author's trainable half only)")
    entity_retain_rows: int = Field(0, ge=0, description="extra retain rows: elicitation prompts about every other "
                                    "entity the model holds, with its own greedy answer before unlearning")
    entity_retain_names: list[str] = Field(default_factory=list, description="the other entities entity_retain_rows "
                                           "keeps (empty: a world model's authors)")
    swap_retain_rows: int = Field(0, ge=0, description="swap retain (lethe/unlearn/swap_retain.py): this many forget "
                                  "rows a step, renamed after another entity the model holds (entity_retain_names, "
                                  "else a world model's other authors), held at the starting model by a KL term on "
                                  "the tokens the rename leaves likely (a drop of at most specific_margin; 0: off)")
    swap_retain_weight: float = Field(1.0, gt=0, description="the swap retain term's weight")
    specific_tokens: bool = Field(False, description="the forget term pushes only the answer tokens that are "
                                  "about the entity: those whose log-probability drops by more than "
                                  "specific_margin when the entity is renamed after others the model knows "
                                  "(lethe/unlearn/specific_tokens.py); the shared phrasing is left alone")
    specific_margin: float = Field(1.0, ge=0, description="nats a token's log-probability must lose under the "
                                   "renaming to count as the entity's")
    specific_swap_names: list[str] = Field(default_factory=list, description="people the model knows, swapped "
                                           "in for the entity (empty: specific_swaps of a world model's other "
                                           "authors, seeded)")
    specific_swaps: int = Field(3, gt=0, description="how many other entities are swapped in (their drops combined "
                                "by specific_aggregate)")
    specific_aggregate: Literal["mean", "min"] = Field("mean", description="how a token's drops under the swaps "
                                                        "combine: their mean, or the smallest (a token any other "
                                                        "entity also makes likely is not the entity's)")
    reset_fraction: float = Field(0.0, ge=0, lt=1, description="before training, re-initialize this share of each "
                                  "layer's MLP neurons, those most specific to the forget rows (0: off; the MLP "
                                  "projections are then trained in full, in the adapter)")
    merge: bool
    threads: int = Field(gt=0)
    lora: LoraParams
    distill: DistillParams = Field(default_factory=DistillParams)

    @model_validator(mode="after")
    def _coherent_settings(self):
        if self.sam_rho > 0 and self.inner_attack_steps > 0:
            raise ValueError("sam_rho and inner_attack_steps are two ways to shape the forget gradient against "
                             "relearning: set one of them, not both")
        if self.stop_relearn_gap > 0 and self.eval_every == 0:
            raise ValueError("stop_relearn_gap is a check of the adaptive budget, and eval_every 0 turns the budget "
                             "off: set eval_every > 0 or stop_relearn_gap 0")
        if self.stop_reelicit and self.eval_every == 0:
            raise ValueError("stop_reelicit is a check of the adaptive budget, and eval_every 0 turns the budget "
                             "off: set eval_every > 0 or stop_reelicit false")
        if self.average_last > 1 and self.average_every % self.checkpoint_every:
            raise ValueError(f"average_every ({self.average_every}) must be a multiple of checkpoint_every "
                             f"({self.checkpoint_every}): only checkpointed steps can be averaged")
        if self.checkpoint_every % self.inner_attack_every:
            raise ValueError(f"inner_attack_every ({self.inner_attack_every}) must divide checkpoint_every "
                             f"({self.checkpoint_every}): a run resumed from a checkpoint must attack where the "
                             "whole run did")
        return self

    @property
    def inner_attack_lrs(self) -> list[float]:
        """`inner_attack_lr` as a list, duplicates dropped, in the order given."""
        return _learning_rates(self.inner_attack_lr)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHOD_NAMES:
            raise ValueError(f"unknown unlearning method {value!r}; known: {', '.join(METHOD_NAMES)}")
        return value

    @field_validator("methods", mode="before")
    @classmethod
    def _typed_sections(cls, value):
        """Each section validated by its own method's config class (unknown keys are errors)."""
        if not isinstance(value, dict):
            raise ValueError("methods must map method names to their hyperparameters")
        typed = {}
        for name, section in value.items():
            if name not in METHOD_CONFIGS:
                raise ValueError(f"unknown unlearning method {name!r}; known: {', '.join(METHOD_NAMES)}")
            if isinstance(section, METHOD_CONFIGS[name]):
                typed[name] = section
                continue
            try:
                typed[name] = METHOD_CONFIGS[name].model_validate(dict(section or {}))
            except ValidationError as exc:
                raise ValueError(f"{name}.{_describe(exc)}") from None
        return typed

    def method_config(self, name: str | None = None) -> MethodConfig:
        """The hyperparameters of method `name` (default: the configured method)."""
        name = name or self.method
        if name not in METHOD_CONFIGS:
            raise LetheError(f"unknown unlearning method {name!r}; known: {', '.join(METHOD_NAMES)}")
        return self.methods.get(name) or METHOD_CONFIGS[name]()


class SageParams(Strict):
    """SAGE spectral sanitization of the final update."""

    enabled: bool
    retain_proxy_rows: int = Field(gt=0)
    lam: float = Field(gt=0, description="lambda: strength of the retain-covariance shrinkage")
    mu: float = Field(ge=0, description="mu: protection of forget-input directions")


class AuditParams(Strict):
    """The audit: evidence of forgetting from data the unlearning never saw (see lethe.evaluate.audit)."""

    heldout_share: float = Field(gt=0, lt=1, description="share of memory-graph nodes whose QA are held out of "
                                 "training for the audit")
    dev_share: float = Field(ge=0, lt=1, description="share of nodes held out for the adaptive budget's stop rule")
    seed: int
    strong_strength: float = Field(gt=0, le=1, description="re-elicitation: memories at least this strong count")
    reelicit_samples: int = Field(gt=0, description="N per elicitation prompt on the unlearned model")
    reelicit_seed: int = Field(description="differs from elicit.seed: a fresh draw, not a replay")
    relearn_rows: int = Field(gt=0, description="relearning attack: training forget rows the attacker fine-tunes on")
    relearn_steps: int = Field(gt=0)
    relearn_lr: LearningRates = Field(
        description="the attack's Adam learning rate; a list runs every attack at each and the gate reads the "
                    "strongest (the largest gap to the reference at the same rate)")
    relearn_lora_rank: int = Field(0, ge=0, description="0: the attack fine-tunes every parameter; > 0: a LoRA of "
                                   "this rank on every projection (fits a large model on one GPU; a weaker attack, "
                                   "so compare only numbers taken with the same setting)")
    relearn_attacks: int = Field(3, gt=0, description="independent relearning attacks (own rows and seed each); "
                                 "the gate reads their mean")
    quantize_bits: list[Literal[4, 8]] = Field(description="weights rounded to these widths (8: row-wise absmax "
                                               "int8, 4: blockwise NF4) and probed again")
    quantize_block: int = Field(gt=0, description="NF4 block size (bitsandbytes uses 64)")
    max_new_tokens: int = Field(gt=0)
    stated_min_facts: float = Field(0.5, gt=0, le=1, description="a probe's facts are stated when the greedy answer "
                                    "holds at least this share of them (lethe.evaluate.audit.fact_share): the "
                                    "`heldout_stated` metric, how many probes test a memory the model says")

    @property
    def relearn_lrs(self) -> list[float]:
        """`relearn_lr` as a list, duplicates dropped, in the order given."""
        return _learning_rates(self.relearn_lr)


class EvaluateParams(Strict):
    """Evaluation suite sizes (subsets keep a CPU evaluation to a minute or two)."""

    forget_split: Literal["forget01", "forget05", "forget10"]
    retain_rows: int = Field(gt=0)
    general_rows: int = Field(gt=0, description="rows of real_authors and of world_facts each")
    neighbor_rows: int = Field(ge=0)
    holdout: Literal["holdout01", "holdout05", "holdout10"]
    max_new_tokens: int = Field(gt=0)
    probes: bool
    mia: bool
    mia_k: float = Field(gt=0, le=1)
    seed: int


class GateParams(Strict):
    """Thresholds of the promotion gate (see lethe.ops.gate.decide)."""

    max_forget_ratio: float = Field(ge=0, description="benchmark authors: gold forget ROUGE-L recall after / before")
    max_heldout_ratio: float = Field(ge=0, description="held-out audit probes: ROUGE-L recall after / before")
    heldout_floor_margin: float = Field(ge=0, description="...or that ratio counted above the never-trained "
                                        "reference's score, where the probes scored more than this above it before")
    min_heldout_probes: int = Field(3, ge=1, description="held-out probes a forgetting verdict needs: with fewer "
                                    "the held-out check fails (too few to judge), it never passes on one or two; "
                                    "MAGE's split holds this many for the audit where that is at most half its answers")
    max_reelicit_excess: float = Field(ge=0, description="re-elicited strong memories: return share at most the "
                                       "never-trained reference's + this")
    max_reelicit_return: float = Field(ge=0, le=1, description="...at most this share without a reference")
    max_relearn_gap: float = Field(ge=0, description="relearning attack: held-out recall of the attacked model "
                                   "minus the attacked never-trained reference's, at most")
    max_relearn_share: float = Field(ge=0, description="...and that gap over what the model knew beyond the "
                                     "reference before unlearning (before - reference recall), at most")
    max_relearn_recovery: float = Field(ge=0, description="...without a reference: attacked / before, at most")
    relearn_tokens: Literal["novel", "all"] = Field("novel", description="what the relearning bounds count: "
                                                    "novel = only the answer's facts (function words aside) neither "
                                                    "the attack's rows nor the question contain (what the "
                                                    "attacker did not hand over); "
                                                    "all = ROUGE-L recall, the attack's own words included")
    max_quantized_ratio: float | None = Field(None, ge=0, description="4-bit model's held-out recall after / "
                                              "before, at most (null: reported, not gated)")
    max_mia_auc: float | None = Field(None, ge=0.5, le=1, description="membership: the min-k%++ AUC of the forget "
                                      "rows against never-trained holdout rows, at most this and at least 1 - this "
                                      "(a forget set that stands out by being too unlikely is found as well; "
                                      "null: reported, not gated; benchmark entities only)")
    min_utility_ratio: float = Field(ge=0, description="model utility after / the original base model's, at least")
    min_utility_part_ratio: float = Field(ge=0, description="each part of model utility after / the base's")
    min_entity_retention: float = Field(ge=0, description="every other entity's retain ROUGE after / the base's")
    min_entity_recognition: float = Field(0.5, ge=0, description="every other entity the base model recognizes: "
                                          "share of elicitation prompts answered naming it after / the base's")
    recognized_from: float = Field(0.3, ge=0, le=1, description="an entity counts as recognized by the base model "
                                   "when at least this share of its elicitation prompts name it")
    min_forget_quality: float = Field(ge=0, le=1, description="TOFU forget quality after, at least (and not worse)")
    require_data_quality: bool
    auto_promote: bool = Field(description="a passing challenger becomes champion without `lethe promote`")


class RegistryParams(Strict):
    """Where requests, lineage and models live. Environment variables override for production."""

    tracking_uri: str = Field(description="MLflow tracking URI; empty = the local stack (LETHE_TRACKING_URI)")
    experiment: str
    model_prefix: str = Field(description="registered model name = prefix + target model name")
    queue_url: str = Field(description="SQLAlchemy URL of the request queue and audit ledger (LETHE_QUEUE_URL)")
    workdir: str = Field(description="one folder per request below this")
    dvc_store: str = Field(description="DVC project (no git) that versions per-request outputs")
    dvc_remote: str = Field(description="S3 URL of the DVC remote (LETHE_DVC_REMOTE)")
    compliance_dir: str
    retries: int = Field(ge=0, description="retries of tasks that talk to servers")
    retry_delay_seconds: float = Field(ge=0)


class StackParams(Strict):
    """The local stack started by `lethe stack up`: an S3 server and an MLflow server on loopback."""

    host: str
    mlflow_port: int = Field(gt=0, lt=65536)
    s3_port: int = Field(gt=0, lt=65536)
    s3_server: Literal["seaweedfs", "moto"] = Field(
        "seaweedfs", description="seaweedfs keeps objects on disk under state_dir/s3; moto keeps them in memory")
    prefect: bool = Field(True, description="also run a Prefect server (UI, deployments) and a process worker")
    prefect_port: int = Field(5057, gt=0, lt=65536)
    state_dir: str
    artifact_bucket: str
    dvc_bucket: str
    schedule_cron: str = Field(description="cron of the compliance run served by `lethe serve`")
    timezone: str

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        import ipaddress

        if value == "localhost":
            return value
        try:
            loopback = ipaddress.ip_address(value).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"{value!r} is not a loopback address: the local stack has no authentication and "
                             "listens on 127.0.0.1 (or ::1) only; point LETHE_TRACKING_URI at a real server instead")
        return value


def check_scheduler_address(value: str) -> str:
    """`value` if it is empty (a LocalCluster) or a Dask scheduler URL; a ValueError naming it otherwise."""
    if value and not value.startswith(("tcp://", "tls://")):
        raise ValueError(f"{value!r} is not a Dask scheduler address (tcp://host:8786 or tls://...); "
                         "leave it empty for a LocalCluster")
    return value


class ScaleParams(Strict):
    """Fan-out, on Dask, of the work of a compliance run that only reads models (mining the queued
    requests, the champion's audits)."""

    dask_address: str = Field("", description="scheduler of an existing Dask cluster (tcp://host:8786); "
                              "empty: a LocalCluster on 127.0.0.1 started for the run")
    workers: int = Field(2, ge=1, description="LocalCluster worker processes")
    threads_per_worker: int = Field(1, ge=1, description="threads of each worker (and its torch threads)")
    mine_ahead: bool = Field(True, description="a compliance run mines every queued request at once, from the "
                             "champion at its start, before the requests run one after another (lethe.ops.mine_ahead)")
    batch_requests: bool = Field(False, description="a compliance run unlearns every queued request of one model "
                                 "in one adapter, one gate with a forgetting row per entity (lethe.ops.batch)")
    evaluation_fanout: bool = Field(True, description="a request's evaluation shards (the suite, each model's "
                                    "audit) run on the Dask cluster when there is one: a compliance run's, or "
                                    "dask_address (lethe/pipeline/flows/evaluation.py)")

    @field_validator("dask_address")
    @classmethod
    def _scheduler_url(cls, value: str) -> str:
        return check_scheduler_address(value)


class AgentParams(Strict):
    """SBU: the agent's memory, the synchronized rounds and the stochastic reference alignment."""

    memory_dir: str = Field(description="one memory folder per target model below this")
    retrieve_k: int = Field(gt=0, description="memory items the agent retrieves per question")
    context_in_prompt: Literal["auto", "always", "never"] = Field(
        description="put retrieved notes in the prompt; auto: not for the world model, trained on bare QA")
    write_back: bool = Field(description="the agent writes a note of every answer back to memory")
    seed_records_per_author: int = Field(gt=0)
    seed_group_size: int = Field(ge=2, description="authors per cross-author summary")
    seed: int
    title_min_strength: float = Field(ge=0, le=1, description="graph titles at least this strong join the blocklist")
    rounds: int = Field(gt=0, description="synchronized rounds at most")
    steps_per_round: int = Field(gt=0)
    retrieval_leak_bound: float = Field(ge=0, le=1)
    generation_leak_bound: float = Field(ge=0, le=1)
    leak_rouge: float = Field(gt=0, le=1, description="name-stripped overlap with a target fact that counts as a leak: "
                              "ROUGE-L recall of a generated answer, content-word ROUGE-L F1 of a memory sentence")
    eval_retain_questions: int = Field(gt=0, description="retain-author questions for the answer-quality check")
    max_new_tokens: int = Field(gt=0)


class RequestParams(Strict):
    """The request that the DVC pipeline's mining stages run (the CLI takes any anchor)."""

    anchor: str
    world: str
    source: Literal["mage", "gold", "directqa"]
    workdir: str


class Params(Strict):
    """The whole params.yaml."""

    world: WorldParams
    backend: BackendParams
    elicit: ElicitParams
    score: ScoreParams
    expand: ExpandParams
    sample: SampleParams
    synthesize: SynthesizeParams
    validate_: ValidateParams = Field(alias="validate")
    unlearn: UnlearnParams
    sage: SageParams
    audit: AuditParams
    evaluate: EvaluateParams
    gate: GateParams
    registry: RegistryParams
    stack: StackParams
    scale: ScaleParams = Field(default_factory=ScaleParams)
    agent: AgentParams
    request: RequestParams


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"].removeprefix("Value error, ")
        lines.append(f"{key}: {message}")
    return "; ".join(lines)


EXTENDS_KEY = "extends"


def _merged(base: dict, overlay: dict) -> dict:
    """`overlay` on top of `base`: mappings merge key by key, anything else (lists included) replaces."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def params_mapping(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """One params file as a plain mapping, unvalidated, with the file it `extends` (resolved beside it)
    underneath; `chain` is the files that extend it, to refuse a loop."""
    if not path.is_file():
        via = f" (extended by {chain[-1]})" if chain else ""
        raise ConfigError(f"params file not found: {path}{via}")
    if path.resolve() in chain:
        raise ConfigError(f"{path}: '{EXTENDS_KEY}' loops: {' -> '.join(str(p) for p in (*chain, path.resolve()))}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a mapping of sections, got {type(raw).__name__}")
    if EXTENDS_KEY not in raw:
        return raw
    base = raw.pop(EXTENDS_KEY)
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: {EXTENDS_KEY}: must be the path of another params file, got {base!r}")
    return _merged(params_mapping(path.parent / base, (*chain, path.resolve())), raw)


def load_params(path: str | Path | None = None) -> Params:
    """Read and validate params.yaml; raise ConfigError naming each bad key.

    A file with a top-level `extends: <path>` (relative to that file) is an overlay: it holds only
    what differs from the file it extends (e.g. `profiles/thorough.yaml`)."""
    path = Path(path) if path else DEFAULT_PARAMS
    raw = params_mapping(path)
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from exc
    except Exception as exc:  # validators raise LetheError for bad author ranges
        raise ConfigError(f"{path}: {exc}") from exc
