"""A request's evaluation, its shards fanned out on Dask when a cluster is there.

The evaluation of a request reads models only and splits into independent shards
(request_steps.evaluation_shard_names): the suite (before and after), and the audit of the starting
model, the unlearned model and the never-trained reference, each of which loads its own model (the
last two train relearning attacks, the costly part). Inside a compliance run, which keeps one Dask
cluster for all its phases (lethe.pipeline.scale.shared_cluster), or with a configured scheduler
(`scale.dask_address`, LETHE_DASK_ADDRESS), the `evaluation_fanout` subflow maps one
`evaluation_shard` task per shard; the `evaluate` task then combines them. Elsewhere (a single
`lethe forget`) the shards run one after another in the flow's process: starting a cluster for
one request is not worth it. `scale.evaluation_fanout: false` keeps them in the process always.
"""

from __future__ import annotations

from prefect import flow, unmapped

from lethe.config import Params
from lethe.ops import request_steps as steps
from lethe.ops.request_steps import RequestPlan
from lethe.pipeline.scale import dask_address, dask_task_runner
from lethe.pipeline.tasks import request_ops


@flow(name="evaluation_fanout")
def evaluation_fanout(params: Params, plan: RequestPlan, adapter: str, names: list[str]) -> dict[str, dict]:
    """Every shard of one request's evaluation at once, on the flow's task runner (Dask)."""
    futures = request_ops.evaluation_shard.map(unmapped(params), unmapped(plan), unmapped(adapter), names)
    return {name: future.result() for name, future in zip(names, futures)}


def evaluate_request(plan: RequestPlan, adapter: str, params: Params) -> dict:
    """The request's evaluation: the finished one when resumed, else its shards (on Dask when a cluster
    is there) combined by the `evaluate` task."""
    shards = None
    if (params.scale.evaluation_fanout and dask_address(params.scale)
            and steps.finished_evaluation(params, plan, adapter) is None):
        names = steps.evaluation_shard_names(plan)
        shards = evaluation_fanout.with_options(task_runner=dask_task_runner(params.scale))(params, plan, adapter, names)
    return request_ops.evaluate(plan, adapter, params, shards)
