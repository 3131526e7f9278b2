"""Loading any local causal LM folder, with the checks that must fail before any work starts.

A request must not find out after minutes of mining that its model folder lacks weights, names an
architecture this transformers does not know, has a tokenizer with no pad or end-of-sequence
token, or cannot fit in the memory of the device it will run on. `preflight` checks all of that
in about a second (config, tokenizer and safetensors headers only; no weights are read).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

from lethe.errors import LetheError, ModelNotFoundError

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                      "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
# Loading needs the weights plus transient copies (casting, device transfer); training adds LoRA
# states and activations. Below this share of the available memory a run is refused up front.
USABLE_SHARE = 0.8


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """bfloat16 on CUDA and float32 on CPU for 'auto' / None; else the named dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype]


def require_model_dir(path: str | Path) -> Path:
    """The path as a Path if it holds a loadable Hugging Face model folder; else a clear error."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"no model at {path}: expected a Hugging Face model folder with config.json "
            "(build the default with `lethe world build`)"
        )
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        raise ModelNotFoundError(f"{path} has a config.json but no weights (*.safetensors or *.bin): the model "
                                 "folder is incomplete")
    check_architecture(path)
    return path


def check_architecture(path: Path) -> None:
    """transformers must know the folder's model type and have a causal-LM class for it."""
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        raw = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelNotFoundError(f"{path}/config.json is not valid JSON: {exc}") from exc
    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    if not model_type:
        raise ModelNotFoundError(f"{path}/config.json names no model_type: not a Hugging Face model config")
    try:
        AutoConfig.from_pretrained(path)
    except (ValueError, KeyError) as exc:
        raise ModelNotFoundError(f"{path} is a {model_type!r} model, an architecture transformers "
                                 f"{transformers.__version__} does not know") from exc
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelNotFoundError(f"{path} is a {model_type!r} model, which has no causal-LM head in transformers "
                                 f"{transformers.__version__}: Lethe unlearns causal language models only")


def load_tokenizer(path: str | Path):
    """The folder's tokenizer, with a pad token (its end-of-sequence token when it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelNotFoundError(f"cannot load the tokenizer at {path}: {str(exc).splitlines()[0]}") from exc
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ModelNotFoundError(f"the tokenizer at {path} has neither a pad nor an end-of-sequence token; add "
                                     "one (tokenizer.add_special_tokens) and save the folder again")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def parameter_count(path: Path) -> int | None:
    """Number of weights in the folder, read from safetensors headers (None if there are none)."""
    total, found = 0, False
    for file in sorted(path.glob("*.safetensors")):
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in entry["shape"]:
                count *= dim
            total += count
            found = True
    return total if found else None


def weight_bytes(path: Path, dtype: torch.dtype) -> int:
    """Bytes the weights take once loaded in `dtype` (file sizes when there is no safetensors)."""
    count = parameter_count(path)
    if count is not None:
        return count * torch.finfo(dtype).bits // 8
    return sum(f.stat().st_size for f in path.glob("*.bin"))


def available_bytes(device: torch.device) -> int:
    """Free memory of the device now: CUDA's free memory, or the host's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(path: Path, device: torch.device, dtype: torch.dtype, max_memory_gb: float | None) -> dict:
    """Refuse a model whose weights exceed USABLE_SHARE of the memory it may use; returns the sizing."""
    need = weight_bytes(path, dtype)
    have = available_bytes(device)
    if max_memory_gb is not None:
        have = min(have, int(max_memory_gb * 2**30))
    sizing = {"weight_gb": need / 2**30, "available_gb": have / 2**30, "device": device.type, "dtype": str(dtype)}
    if need > USABLE_SHARE * have:
        raise LetheError(f"the model at {path} needs {need / 2**30:.2f} GiB for its weights in "
                         f"{str(dtype).removeprefix('torch.')} on {device.type}, more than "
                         f"{USABLE_SHARE:.0%} of the {have / 2**30:.2f} GiB available; use a GPU with more memory, "
                         "backend.dtype: bfloat16, or raise backend.max_memory_gb")
    return sizing


def preflight(path: str | Path, device: str, dtype: str | None, max_memory_gb: float | None) -> dict:
    """Every check that must pass before a request does any work; returns what was checked."""
    folder = require_model_dir(path)
    load_tokenizer(folder)
    target = resolve_device(device)
    return {"model": str(folder), **check_fits(folder, target, resolve_dtype(dtype, target), max_memory_gb)}


def check_model(path: str | Path, backend) -> Path:
    """`preflight` with params.yaml's backend section; returns the model folder."""
    return Path(preflight(path, backend.device, backend.dtype, backend.max_memory_gb)["model"])


def load_causal_lm(path: str | Path, device: torch.device, dtype: torch.dtype):
    """The model of a checked folder on `device` in `dtype`; a clear error if transformers cannot load it."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelNotFoundError(f"cannot load the model at {path}: {str(exc).splitlines()[0]}") from exc
