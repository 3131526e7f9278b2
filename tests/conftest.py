"""Shared fixtures: the tiny world is built once per session (cached under artifacts/ by params)."""

from __future__ import annotations

import os

import pytest

from lethe.config import Params, load_params


# Tests that need a trained world, a Prefect server or the local stack are the `slow` tier; `make
# test-fast` runs the rest (logic on hand-made inputs and tiny random models) in under a minute.
SLOW_FIXTURES = {"tiny_world", "tiny_backend", "prefect_harness"}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def params() -> Params:
    return load_params()


@pytest.fixture(scope="session")
def tiny_world(params: Params) -> dict:
    """Record of the tiny world build (model, retain model, authors)."""
    from lethe.world.build import build_world

    return build_world(params, "tiny")


@pytest.fixture(scope="session")
def tiny_backend(tiny_world: dict, params: Params):
    from lethe.llm.backend import Backend

    return Backend.load(tiny_world["model_path"], "cpu", params.backend.batch_size)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One Prefect test server for the whole session, with its own PREFECT_HOME."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect_home"))
    os.environ.pop("PREFECT_API_URL", None)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
