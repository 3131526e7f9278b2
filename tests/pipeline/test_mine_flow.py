"""The MAGE flow under Prefect's test harness: every step a tracked task, resumable, outcome correct."""


def test_mine_flow_runs_each_step_as_a_task(prefect_harness, tiny_world, tmp_path):
    from prefect.client.orchestration import get_client

    from lethe.pipeline.flows.mine import mine_flow

    request = {"anchor": "Basil Mahfouz Al-Kuwaiti", "model_path": tiny_world["model_path"], "source": "mage",
               "description": None}
    state = mine_flow(request, str(tmp_path), return_state=True)
    result = state.result()
    assert result["status"] == "validated"
    assert (tmp_path / "graph.json").is_file() and (tmp_path / "forget_set.jsonl").is_file()

    import asyncio

    async def task_names():
        async with get_client() as client:
            runs = await client.read_task_runs()
            return {r.name.split("-")[0] for r in runs if r.flow_run_id == state.state_details.flow_run_id}

    assert {"elicit", "score", "expand", "sample", "synthesize", "validate"} <= asyncio.run(task_names())


def test_mine_flow_stops_on_unknown_anchor(prefect_harness, tiny_world, tmp_path):
    from lethe.pipeline.flows.mine import mine_flow

    request = {"anchor": "Zorba Quintanilla Ek", "model_path": tiny_world["model_path"], "source": "mage",
               "description": None}
    assert mine_flow(request, str(tmp_path))["status"] == "nothing_memorized"
    assert not (tmp_path / "graph.json").exists()
