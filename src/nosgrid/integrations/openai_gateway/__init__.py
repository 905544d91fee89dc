"""An OpenAI-compatible gateway in front of the nodes' model servers (docs/gateway.md).

``/openai/v1/models``, ``/chat/completions``, ``/completions`` and ``/embeddings``, routed
to healthy replicas of service jobs, authorized by signed API keys and billed per token.
"""

from nosgrid.integrations.openai_gateway.billing import Meter, Prices, QuotaExceeded
from nosgrid.integrations.openai_gateway.keys import (
    KeyClaims,
    KeyRejected,
    issue_key,
    parse_duration,
    verify_key,
)
from nosgrid.integrations.openai_gateway.registry import Registry, Replica
from nosgrid.integrations.openai_gateway.runtime import Gateway, GatewaySettings

__all__ = ["Gateway", "GatewaySettings", "KeyClaims", "KeyRejected", "Meter", "Prices",
           "QuotaExceeded", "Registry", "Replica", "issue_key", "parse_duration", "verify_key"]
