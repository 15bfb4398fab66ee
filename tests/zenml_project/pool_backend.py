"""A resource-pool back end for ZenML's plugin interface, in this process (tests only).

ZenML 0.98's open-source store has the resource-pool interface but no implementation (pools are a
ZenML Pro service). This one grants every request at once from a single pool and hands back the
pool's component-setting overrides, which is all a step operator sees of a pool.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from zenml.enums import ResourceRequestStatus
from zenml.models import Page, ResourceRequestResponse
from zenml.models.v2.core.resource_request import (
    ResourcePoolAllocation,
    ResourceRequestResponseBody,
    ResourceRequestResponseMetadata,
    ResourceRequestResponseResources,
)
from zenml.utils.time_utils import utc_now
from zenml.zen_stores.resource_pools.store_interface import ResourcePoolsSQLStoreInterface

POOL = "test-pool"


class GrantingPool(ResourcePoolsSQLStoreInterface):
    """Allocates exactly what each request demands; ``overrides`` are the pool's component settings."""

    def __init__(self, store: Any, overrides: dict[str, Any]) -> None:
        super().__init__(store)  # the store now reports resource pools as enabled
        self.pool_id = uuid4()
        self.overrides = overrides
        self.requests: dict[UUID, Any] = {}

    def _response(self, request_id: UUID) -> ResourceRequestResponse:
        request, now = self.requests[request_id], utc_now()
        allocations = [
            ResourcePoolAllocation(
                id=uuid4(), request_id=request_id, demand_index=index, pool_id=self.pool_id, pool_name=POOL,
                resource_id=uuid4(), resource_kind=demand.kind or demand.resource, class_name="default",
                quantity=demand.quantity, unit=demand.unit, policy_id=uuid4(), priority=0,
                component_id=request.component_ids[0], preemption_state="none",
            )
            for index, demand in enumerate(request.demands)
        ]
        return ResourceRequestResponse(
            id=request_id,
            body=ResourceRequestResponseBody(
                created=now, updated=now, user_id=request.user, component_ids=request.component_ids,
                step_run_id=request.step_run_id, demands=request.demands, status=ResourceRequestStatus.ALLOCATED,
                reclaim_tolerance=request.reclaim_tolerance, pool_id=self.pool_id, pool_name=POOL,
            ),
            metadata=ResourceRequestResponseMetadata(),
            resources=ResourceRequestResponseResources(component_settings=self.overrides, allocations=allocations),
        )

    def create_resource_request(self, session: Any, resource_request: Any) -> ResourceRequestResponse:
        request_id = uuid4()
        self.requests[request_id] = resource_request
        return self._response(request_id)

    def renew_resource_request(self, resource_request_id: UUID, renewal_request: Any) -> ResourceRequestResponse:
        return self._response(resource_request_id)

    def get_resource_request(self, resource_request_id: UUID, hydrate: bool = True) -> ResourceRequestResponse:
        return self._response(resource_request_id)

    def list_resource_requests(self, filter_model: Any, hydrate: bool = False) -> Page:
        return Page(index=1, max_size=50, total_pages=1, total=0, items=[])

    def release_resource_request(self, resource_request_id: UUID) -> ResourceRequestResponse:
        return self._response(resource_request_id)

    def release_step_run_resources(self, session: Any, step_run_id: UUID) -> None:
        return None
