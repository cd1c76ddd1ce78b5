"""One-line integrations with training frameworks, each in its own module and imported only
when used (``import hyperdash`` imports none of them, nor any framework):

- :mod:`hyperdash.integrations.keras`: ``model.fit(..., callbacks=[HyperdashCallback(exp)])``
- :mod:`hyperdash.integrations.lightning`: ``Trainer(logger=HyperdashLogger("my run"))``
- :mod:`hyperdash.integrations.transformers`: ``Trainer(..., callbacks=[HyperdashCallback(exp)])``
- :mod:`hyperdash.integrations.xgboost`: ``xgb.train(..., callbacks=[HyperdashCallback(exp)])``
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..experiment import Experiment

__all__ = ["record_numbers"]


def record_numbers(exp: Experiment, values: Mapping[Any, Any], step: int | None, *, prefix: str = "",
                   log: bool = False) -> None:
    """Record each number of ``values`` (Python, numpy or torch scalars) as a metric of ``exp``
    at ``step``, its name prefixed with ``prefix``; anything that is not a number (a learning
    rate schedule's name, an epoch's text) is left out. ``log`` shows each in the terminal."""
    for name, value in values.items():
        try:
            exp.metric(prefix + str(name), value, step=step, log=log)
        except TypeError:
            continue  # not a number: nothing to chart
