"""Probe queries for the backflow audit, and the held-out ones that judge the variants.

- audit probes (used inside the rounds): the MAGE forget questions, plain and wrapped in an
  adversarial instruction; leaks found here feed the next round.
- evaluation probes (never trained on): for a benchmark author the TOFU gold questions, their
  paraphrases and adversarial wrappers; for any other entity the audit probes (stated in the
  report, since they are then not held out).
- retain questions: other authors' gold questions, for the answer-quality check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from lethe.data import author_qa, load_perturbed
from lethe.errors import LetheError
from lethe.evaluate.probes import ADVERSARIAL


@dataclass(frozen=True)
class Probe:
    question: str
    reference: str
    kind: str  # forget_qa | adversarial | gold | paraphrase

    def to_dict(self) -> dict:
        return asdict(self)


def _wrapped(probes: Sequence[Probe]) -> list[Probe]:
    templates = list(ADVERSARIAL.values())
    return [Probe(templates[i % len(templates)].format(q=p.question), p.reference, "adversarial")
            for i, p in enumerate(probes)]


def audit_probes(forget_pairs: Sequence[tuple[str, str]]) -> list[Probe]:
    """The MAGE forget questions, plain and adversarially wrapped."""
    plain = [Probe(q, a, "forget_qa") for q, a in forget_pairs]
    return plain + _wrapped(plain)


def evaluation_probes(anchor: str) -> list[Probe]:
    """Gold, paraphrased and adversarial questions about a TOFU author (LetheError for others)."""
    from lethe.supervision.baselines import author_index

    index = author_index(anchor)
    gold = [Probe(qa.question, qa.answer, "gold") for qa in author_qa(index)]
    paraphrased = [Probe(p.paraphrased_question, p.answer, "paraphrase") for p in load_perturbed("forget10")
                   if p.author_index == index and p.paraphrased_question and p.paraphrased_question != p.question]
    if not gold:
        raise LetheError(f"no gold questions for {anchor!r}")
    return gold + paraphrased + _wrapped(gold)


def retain_questions(authors: Sequence[tuple[int, str]], count: int) -> list[Probe]:
    """`count` gold questions spread round-robin over `authors` (index, name)."""
    per_author = [author_qa(index) for index, _ in authors]
    picked: list[Probe] = []
    for position in range(max((len(rows) for rows in per_author), default=0)):
        for rows in per_author:
            if position < len(rows) and len(picked) < count:
                picked.append(Probe(rows[position].question, rows[position].answer, "retain"))
    return picked
