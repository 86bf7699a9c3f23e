"""``to_dict`` / ``from_dict`` for the frozen config dataclasses (checkpoint metadata, TOML)."""

from __future__ import annotations

import dataclasses
from typing import Any


class DictConfig:
    """Mixin for a frozen dataclass: a plain-dict round trip that rejects unknown keys."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; allowed: {sorted(allowed)}")
        return cls(**d)
