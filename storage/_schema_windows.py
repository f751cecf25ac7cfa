"""Migration 15: HighLevel's shared budgets become sliding windows of permit starts."""

from __future__ import annotations

DESCRIPTION = "rate budgets: sliding windows of permit starts for HighLevel's limit"

# The same SQL on SQLite and PostgreSQL. A window's last `limit` permit starts as a JSON
# array, oldest first (storage/_budgets.py, take_window); NULL for a token bucket's row.
STATEMENTS: tuple[str, ...] = ("ALTER TABLE rate_budgets ADD COLUMN starts TEXT",)
