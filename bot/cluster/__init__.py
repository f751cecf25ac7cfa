"""What several `ghl-bridge serve` instances on one database share beyond the store's rows."""

from bot.cluster.budget import (
    DEFAULT_INSTANCES,
    BucketShape,
    BudgetExhausted,
    BudgetStore,
    SharedBudget,
    WindowShape,
    highlevel_key,
    slack_key,
)

__all__ = [
    "DEFAULT_INSTANCES",
    "BucketShape",
    "BudgetExhausted",
    "BudgetStore",
    "SharedBudget",
    "WindowShape",
    "highlevel_key",
    "slack_key",
]
