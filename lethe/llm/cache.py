"""Loaded models kept for reuse: a Dask worker keeps its models across the tasks it runs."""

from __future__ import annotations

from pathlib import Path

from lethe.config import BackendParams


class ModelCache:
    """Backends by model folder, each loaded once (on first use)."""

    def __init__(self, cfg: BackendParams):
        self.cfg, self._loaded = cfg, {}

    def get(self, path: str | Path):
        """The backend of the model in `path`, loaded now if it is not yet."""
        from lethe.llm.backend import Backend

        key = str(path)
        if key not in self._loaded:
            self._loaded[key] = Backend.from_params(key, self.cfg)
        return self._loaded[key]
