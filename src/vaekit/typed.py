"""Type checks of config values, shared by every config dataclass and the TOML/JSON parser.

The rules (one place, so ``TrainConfig(epochs='10')`` from Python and ``epochs = "10"`` in a TOML file
fail the same way, with a one-line :class:`VaekitError` naming the key and the expected type):
ints widen to floats; bools are neither ints nor floats; integral/real NumPy scalars count as ints/floats;
a tuple field (``model.hidden``, ``data.image_size``) takes a list or tuple of its item type and is
stored as a tuple.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from typing import Any

from vaekit.errors import VaekitError


def _fail(key: str, message: str) -> None:
    raise VaekitError(f"config key '{key}': {message}")


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy.bool_ too


def coerce(value: Any, kind: Any, key: str, strict: bool = True) -> Any:
    """``value`` checked against the annotation ``kind`` and converted to it (see the module doc).
    An annotation outside these rules is a TypeError when ``strict``, else the value passes unchecked."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        (item_kind, _) = typing.get_args(kind)
        if not isinstance(value, (list, tuple)):
            _fail(key, f"expected a list, got {value!r}")
        return tuple(coerce(v, item_kind, key, strict) for v in value)
    if origin in (typing.Union, types.UnionType):  # X | None: None, or a value of X
        args = typing.get_args(kind)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce(value, inner[0], key, strict)
        if strict:  # pragma: no cover - none are declared
            raise TypeError(f"unsupported config annotation {kind!r} for {key}")
        return value
    if kind is bool:
        if not _is_bool(value):
            _fail(key, f"expected true or false, got {value!r}")
        return bool(value)
    if kind is int:
        if _is_bool(value) or not isinstance(value, numbers.Integral):
            _fail(key, f"expected an integer, got {value!r}")
        return int(value)
    if kind is float:
        if _is_bool(value) or not isinstance(value, numbers.Real):
            _fail(key, f"expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            _fail(key, f"expected a string, got {value!r}")
        return value
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if not isinstance(value, kind):
            _fail(key, f"expected a {kind.__name__}, got {type(value).__name__}; pass {kind.__name__}(...) or "
                  "build the whole config with vaekit.config.config_from_dict")
        return value
    if strict:  # pragma: no cover - every declared annotation is handled above
        raise TypeError(f"unsupported config annotation {kind!r} for {key}")
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a dataclass, computed once per class."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def check_fields(obj: Any, prefix: str) -> None:
    """Check and convert every field of the frozen dataclass ``obj`` in place (call first in
    ``__post_init__``); keys are named ``prefix.field`` (or ``field`` when ``prefix`` is empty)."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(obj, f.name)
        converted = coerce(value, hints[f.name], key, strict=False)
        if converted is not value:
            object.__setattr__(obj, f.name, converted)
