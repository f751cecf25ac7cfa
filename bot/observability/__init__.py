"""What an operator reads of a running bridge: `/metrics` and `/readyz`."""

from bot.observability.metrics import BridgeMetrics, new_instance_id, program_version
from bot.observability.readiness import Readiness

__all__ = ["BridgeMetrics", "Readiness", "new_instance_id", "program_version"]
