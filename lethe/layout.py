"""The files of a request's folder and of its mining folder, named once, and what each MAGE step
reads and writes.

Every module that opens a file of a request asks `RequestLayout` (its work folder: mine/,
unlearn/, evaluation/, sbu/) or `MineLayout` (the mining folder) for its path, and
`STEP_IO` declares, per MAGE step, the files it reads, the files it writes and the params.yaml
sections it depends on. `dvc.yaml` must say the same (tests/test_layout.py checks it), so the DAG DVC
records is the lineage that happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import overload

UNLEARN_REPORT = "unlearn.json"  # what a training run writes in its output folder (lethe.unlearn.run)
SBU_REPORT = "sbu_report.json"  # what an SBU run writes in its output folder (lethe.agent.sbu)


class _File:
    """One file of a layout: `layout.<role>` is its path (under `layout.root`), `Layout.<role>.name` its name."""

    def __init__(self, name: str):
        self.name = name

    def __set_name__(self, owner: type, role: str) -> None:
        self.role = role

    @overload
    def __get__(self, layout: None, owner: type) -> _File: ...

    @overload
    def __get__(self, layout: MineLayout | RequestLayout, owner: type) -> Path: ...

    def __get__(self, layout, owner=None):
        return self if layout is None else layout.root / self.name


@dataclass(frozen=True)
class MineLayout:
    """Every file of one mining folder (`root`), by role."""

    root: Path

    request = _File("request.json")
    responses_hop0 = _File("responses_hop0.jsonl")
    graph_seed = _File("graph_seed.json")
    graph = _File("graph.json")
    responses = _File("responses.jsonl")
    graph_png = _File("graph.png")
    mining_stats = _File("mining_stats.json")
    paths = _File("paths.jsonl")
    forget_set = _File("forget_set.jsonl")
    dev_set = _File("dev_set.jsonl")
    audit_set = _File("audit_set.jsonl")
    neighbor_set = _File("neighbor_set.jsonl")
    synthesis = _File("synthesis.json")
    validation_dir = _File("validation")
    validation = _File("validation/validation.json")

    @staticmethod
    def beside(forget_set: str | Path) -> MineLayout:
        """The layout of the folder that holds `forget_set`."""
        return MineLayout(Path(forget_set).parent)

    @classmethod
    def file_name(cls, role: str) -> str:
        """The file name of `role` inside a mining folder (a clear error for an unknown role)."""
        entry = cls.__dict__.get(role)
        if not isinstance(entry, _File):
            raise KeyError(f"a mining folder has no file called {role!r}")
        return entry.name


@dataclass(frozen=True)
class RequestLayout:
    """Every folder and file of one request's work folder (`root`), by role."""

    root: Path

    mine_dir = _File("mine")
    unlearn_dir = _File("unlearn")
    unlearn_report = _File(f"unlearn/{UNLEARN_REPORT}")
    evaluation_dir = _File("evaluation")
    sbu_dir = _File("sbu")
    sbu_report = _File(f"sbu/{SBU_REPORT}")

    @property
    def mine(self) -> MineLayout:
        """The files of the request's mining folder."""
        return MineLayout(self.mine_dir)


@dataclass(frozen=True)
class StepIO:
    """What one MAGE step reads and writes (roles of MineLayout) and which params.yaml sections it uses.

    `done`: the output written last, whose presence marks the step complete (a crashed step reruns).
    `model`: the step loads the target model (so the model is one of its inputs).
    `metrics`: outputs DVC keeps as metrics rather than cached outputs.
    """

    reads: tuple[str, ...]
    writes: tuple[str, ...]
    params: tuple[str, ...]
    done: str
    model: bool
    metrics: tuple[str, ...] = ()


STEP_IO: dict[str, StepIO] = {
    "elicit": StepIO(reads=(), writes=("responses_hop0",), params=("backend", "elicit"), done="responses_hop0",
                     model=True),
    "score": StepIO(reads=("responses_hop0",), writes=("graph_seed",), params=("score",), done="graph_seed",
                    model=False),
    "expand": StepIO(reads=("graph_seed", "responses_hop0"), writes=("graph", "responses", "graph_png"),
                     params=("backend", "elicit", "score", "expand"), done="graph", model=True,
                     metrics=("mining_stats",)),
    "sample": StepIO(reads=("graph",), writes=("paths",), params=("sample",), done="paths", model=False),
    "synthesize": StepIO(reads=("graph", "paths", "responses"),
                         writes=("forget_set", "dev_set", "audit_set", "neighbor_set", "synthesis"),
                         params=("backend", "elicit", "synthesize", "audit"), done="forget_set", model=True),
    "validate": StepIO(reads=("graph", "forget_set", "dev_set", "audit_set", "neighbor_set", "synthesis"),
                       writes=("validation_dir",), params=("validate",), done="validation", model=False),
}
STEPS = tuple(STEP_IO)
