"""A per-sample operator made by a whole-table step for one run, carrying that step's live state.

``gradient-sim`` and ``nuggets`` first do whole-pool work (a warm-up, an anchor set),
then score samples one by one. That per-sample part runs through the runtime's cached,
batched path (``runtime/execution/sample_runner.py: run_sample_op``) as a :class:`BoundOperator`: its
``Params`` hold what identifies the results (warm-up key, anchor hash, projection), so
the cache key stays derived; the live state (model, checkpoints) rides along unkeyed.
"""

from __future__ import annotations

from typing import Any, Generic

from dslrun.core.cost import Resource
from dslrun.operators.base import P, SampleOperator


class BoundOperator(SampleOperator[P], Generic[P]):
    resource = Resource.MODEL

    def __init__(self, params: P, state: Any, identity: str):
        super().__init__(params)
        self.state, self.identity = state, identity

    def model_identity(self) -> str:
        return self.identity
