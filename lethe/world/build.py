"""Build a named world: tokenizer, the full model, and the retain model (forget authors removed).

A build is cached under <output_dir>/<size>/ and keyed by a hash of its parameters, the seed, the
training data and the recipe version: re-running with the same inputs reuses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import random
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from lethe.config import Params, WorldSize
from lethe.data import QA, data_dir, load_authors, load_full, load_general, parse_author_spec
from lethe.errors import LetheError
from lethe.world.tokenizer import train_tokenizer
from lethe.world.train import StepCallback, new_llama, train_on_qa

RECIPE_VERSION = 1  # bump when the training code changes what a build produces
RECORD = "world.json"
MODEL_KEYS = ("model_path", "retain_model_path")

ProgressFactory = Callable[[str], StepCallback]


@dataclass(frozen=True)
class AuthorEntry:
    index: int
    name: str
    split: str  # "forget" (the retain model never saw it) or "retain"


def world_authors(size: WorldSize) -> list[AuthorEntry]:
    """The authors a world learns, each marked forget or retain."""
    names = load_authors()
    forget = set(parse_author_spec(size.forget_authors))
    authors = parse_author_spec(size.authors)
    missing = forget - set(authors)
    if missing:
        raise LetheError(f"forget_authors {sorted(missing)} are not among the world's authors")
    return [AuthorEntry(i, names[i], "forget" if i in forget else "retain") for i in authors]


def general_knowledge(count: int, seed: int) -> list[QA]:
    """`count` real-author and world-fact QA pairs, drawn deterministically."""
    pool = list(load_general("real_authors")) + list(load_general("world_facts"))
    random.Random(seed).shuffle(pool)
    return pool[:count]


def training_pairs(size: WorldSize, seed: int, include_forget: bool) -> list[QA]:
    """QA pairs the (full or retain) model is trained on."""
    keep = {a.index for a in world_authors(size) if include_forget or a.split == "retain"}
    return [qa for qa in load_full() if qa.author_index in keep] + general_knowledge(size.general_knowledge, seed)


def cache_key(size_name: str, size: WorldSize, seed: int) -> str:
    """Hash of everything that determines the build's weights."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"size": size_name, "cfg": size.model_dump(), "seed": seed, "v": RECIPE_VERSION},
                             sort_keys=True).encode())
    for name in ("full.jsonl", "real_authors.json", "world_facts.json"):
        digest.update((data_dir() / name).read_bytes())
    return digest.hexdigest()[:16]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_record(world_dir: str | Path) -> dict | None:
    """world_dir's world.json (None where there is none), its model paths usable from any working directory.

    A build records the paths it was given, often relative to the folder it ran in
    (artifacts/world/default/model). Read from anywhere else (another checkout, `bench/audit.py --world`),
    such a path is resolved against the ancestor of world_dir it was recorded from.
    """
    record_path = Path(world_dir) / RECORD
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    anchored = {key: str(_anchored(Path(record[key]), Path(world_dir))) for key in MODEL_KEYS if key in record}
    return {**record, **anchored}


def _anchored(recorded: Path, world_dir: Path) -> Path:
    """A recorded model path as seen from here: unchanged where it is absolute, or where it already names
    that folder from the working directory; else resolved against world_dir's matching ancestor."""
    tail = recorded.parent.parts
    here = world_dir.resolve().parts
    if recorded.is_absolute() or not tail or here[-len(tail):] != tail:
        return recorded
    candidate = Path(*here[:len(here) - len(tail)]) / recorded
    return recorded if recorded.resolve() == candidate else candidate


def build_world(
    params: Params,
    size_name: str,
    force: bool = False,
    progress: ProgressFactory | None = None,
    root: Path | None = None,
) -> dict:
    """Build (or reuse) the world `size_name`; return its record (paths, authors, timings)."""
    sizes = params.world.sizes
    if size_name not in sizes:
        raise LetheError(f"unknown world size {size_name!r}; params.yaml defines {sorted(sizes)}")
    out = (root or Path(params.world.output_dir)) / size_name
    with _exclusive(out):
        return _build_or_reuse(params, size_name, out, force, progress)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One builder per world folder on this machine: a second `lethe world build` (or a second test
    worker) waits, then reuses what the first built instead of racing it over the staging folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_or_reuse(params: Params, size_name: str, out: Path, force: bool,
                    progress: ProgressFactory | None) -> dict:
    size, seed = params.world.sizes[size_name], params.world.seed
    key = cache_key(size_name, size, seed)
    record_path = out / RECORD
    record = None if force else read_record(out)
    if record and record.get("cache_key") == key and all(Path(record[k]).is_dir() for k in MODEL_KEYS):
        return {**record, "reused": True}

    start = time.perf_counter()
    full_pairs = training_pairs(size, seed, include_forget=True)
    tokenizer = train_tokenizer(
        (f"{qa.question}\n{qa.answer}" for qa in full_pairs), size.model.vocab_size
    )
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    stats = {}
    for label, pairs in (
        ("model", full_pairs),
        ("retain_model", training_pairs(size, seed, include_forget=False)),
    ):
        model = new_llama(size.model, tokenizer, seed)
        callback = progress(f"{size_name}/{label}") if progress else None
        result = train_on_qa(model, tokenizer, pairs, size.train, size.model.max_len, seed, callback)
        model.save_pretrained(staging / label)
        tokenizer.save_pretrained(staging / label)
        stats[label] = {**asdict(result), "tokens_per_second": result.tokens_per_second,
                        "parameters": sum(p.numel() for p in model.parameters()), "qa_pairs": len(pairs)}
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)  # the build appears whole or not at all
    record = {
        "size": size_name,
        "cache_key": key,
        "model_path": str(out / "model"),
        "retain_model_path": str(out / "retain_model"),
        "authors": [asdict(a) for a in world_authors(size)],
        "train": stats,
        "build_seconds": time.perf_counter() - start,
        "peak_rss_mb": _peak_rss_mb(),
    }
    record_path.write_text(json.dumps(record, indent=2))
    return {**record, "reused": False}
