"""Many params at once: a dict (nested dicts flattened with dots), an ``argparse.Namespace``,
a dataclass, as :meth:`hyperdash.Experiment.params` and the framework integrations take them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["flatten"]


def flatten(values: Any, prefix: str = "", on_twice: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``values`` as one flat dict of params: ``{"optim": {"lr": 0.1}}`` gives
    ``{"optim.lr": 0.1}``; an ``argparse.Namespace`` (or any object with a ``__dict__`` of its
    own that ``vars`` reads, such as ``types.SimpleNamespace``) gives its attributes; a
    dataclass instance its fields, nested dataclasses flattened too. An empty nested dict is
    kept as the value ``{}``. Raises TypeError for anything else. A name given twice (``"a.b"``
    beside ``{"a": {"b": ...}}``, or ``1`` beside ``"1"``) keeps the last value, and is handed to
    ``on_twice``."""
    mapping = _as_mapping(values)
    if mapping is None:
        raise TypeError("params takes a dict, an argparse.Namespace or a dataclass instance, not "
                        f"{type(values).__name__}")
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        nested = _as_mapping(value) if not isinstance(value, (str, bytes)) else None
        found = flatten(nested, name + ".", on_twice) if nested else {
            name: dict(nested) if nested is not None else value}
        for twice in found.keys() & flat.keys():
            if on_twice is not None:
                on_twice(twice)
        flat.update(found)
    return flat


def _as_mapping(values: Any) -> Mapping[Any, Any] | None:
    if isinstance(values, Mapping):
        return values
    if dataclasses.is_dataclass(values) and not isinstance(values, type):
        return {f.name: getattr(values, f.name) for f in dataclasses.fields(values)}
    import argparse
    import types

    if isinstance(values, (argparse.Namespace, types.SimpleNamespace)):
        return vars(values)
    return None
