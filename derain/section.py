"""A config section (derain.config): a frozen dataclass checked when built, to and from plain
dicts. Its name is the class name without "Config", lower case: ModelConfig -> [model]."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from rainsynth.errors import RainsynthError

S = TypeVar("S", bound="Section")


class ConfigError(RainsynthError):
    """A training config file or override is malformed, has an unknown key or a bad value."""


class Section:
    """Mixin for a frozen dataclass: checks (:meth:`check`) and a plain-dict round trip."""

    @classmethod
    def section(cls) -> str:
        return cls.__name__.removesuffix("Config").lower()

    @classmethod
    def check(cls, ok: bool, key: str, allowed: str, value: Any) -> None:
        """ConfigError unless ``ok``: "[section] key must be allowed, got value"."""
        if not ok:
            raise ConfigError(f"[{cls.section()}] {key} must be {allowed}, got {plain(value)!r}")

    def at_least(self, allowed: str = "an integer >= {}", **minimums: int) -> None:
        """:meth:`check` each field named against its minimum, in order."""
        for key, minimum in minimums.items():
            value = getattr(self, key)
            self.check(value >= minimum, key, allowed.format(minimum), value)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON/TOML-able values (tuples as lists)."""
        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls: type[S], values: dict[str, Any], base: S | None = None, also: str = "") -> S:
        """Build from plain values, each matched to its field's type (lists become tuples);
        fields not given keep ``base``'s values (default: the field defaults). ``also``: a key
        the caller reads itself, named among the allowed ones."""
        if not isinstance(values, dict):
            raise ConfigError(f"[{cls.section()}] must be a table, got {values!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        checked = {}
        for key, value in values.items():
            if key not in fields:
                allowed = ", ".join([*fields, *([also] if also else [])])
                raise ConfigError(f"unknown key {key!r} in [{cls.section()}]; allowed: {allowed}")
            reference = _default(fields[key]) if base is None else getattr(base, key)
            checked[key] = _coerce(value, reference, f"[{cls.section()}] {key}")
        return cls(**checked) if base is None else dataclasses.replace(base, **checked)


def plain(value: Any) -> Any:
    """A tuple as a list (TOML and JSON have lists only); anything else as it is."""
    return list(value) if isinstance(value, tuple) else value


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


_KINDS = ((bool, "true or false"), (int, "an integer"), (float, "a number"), (str, "a string"))


def _coerce(value: Any, reference: Any, where: str) -> Any:
    """Match ``value`` to the type of ``reference`` (the field's default): ConfigError naming
    ``where`` when it cannot; ints become floats where a float is expected, lists tuples."""
    if isinstance(reference, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(v, reference[0], where) for v in value) if reference else tuple(value)
    for kind, allowed in _KINDS:
        if isinstance(reference, kind):
            ok = isinstance(value, int | float if kind is float else kind)
            if not ok or (kind is not bool and isinstance(value, bool)):
                raise ConfigError(f"{where} must be {allowed}, got {value!r}")
            return float(value) if kind is float else value
    return value
