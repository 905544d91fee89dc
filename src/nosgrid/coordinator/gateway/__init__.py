"""The OpenAI-compatible gateway inside the coordinator (docs/gateway.md).

``/openai/v1/models``, ``/chat/completions``, ``/completions`` and ``/embeddings`` (routes
in :mod:`nosgrid.coordinator.api.openai`), routed to healthy replicas of service jobs,
authorized by signed API keys (:mod:`nosgrid.core.apikeys`) and billed per token
(:mod:`nosgrid.core.metering`).
"""

from nosgrid.coordinator.gateway.registry import Registry, Replica
from nosgrid.coordinator.gateway.runtime import Gateway
from nosgrid.coordinator.gateway.settings import GatewaySettings

__all__ = ["Gateway", "GatewaySettings", "Registry", "Replica"]
