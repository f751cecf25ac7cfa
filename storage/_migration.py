"""A schema migration: its version, what it does, and its steps on each backend."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    postgresql: tuple[str, ...] | None = None

    def steps(self, dialect: str) -> tuple[str, ...]:
        """The statements to run on `dialect` ('sqlite' or 'postgresql')."""
        if dialect == "postgresql" and self.postgresql is not None:
            return self.postgresql
        return self.statements
