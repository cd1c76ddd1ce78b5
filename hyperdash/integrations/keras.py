"""Keras 3 (or TensorFlow's Keras): every value Keras logs, per epoch, and per batch when asked.

::

    from hyperdash import Experiment
    from hyperdash.integrations.keras import HyperdashCallback

    with Experiment("mnist") as exp:
        model.fit(x, y, epochs=10, callbacks=[HyperdashCallback(exp)])
        # the same: callbacks=[exp.callbacks.keras]

Per epoch, each value (``loss``, ``accuracy``, ``val_loss``, ...) is a metric with the epoch as
its step, shown in the terminal as the SDK shows metrics only where Keras shows nothing
itself (``verbose=0``). ``batches=True`` also records each batch's values as ``batch/<name>``, with the
number of batches trained so far as the step.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import record_numbers

if TYPE_CHECKING:
    from ..experiment import Experiment

__all__ = ["HyperdashCallback"]


def _callback_base() -> type[Any]:
    """Keras's ``Callback`` class: Keras 3's, else TensorFlow's."""
    errors = []
    for module in ("keras.callbacks", "tensorflow.keras.callbacks"):
        try:
            base: type[Any] = importlib.import_module(module).Callback
            return base
        except ImportError as exc:
            errors.append(f"{module}: {exc}")
    raise ImportError("hyperdash.integrations.keras needs Keras (pip install keras, and a backend such as "
                      "torch with KERAS_BACKEND=torch): " + "; ".join(errors))


class HyperdashCallback(_callback_base()):  # type: ignore[misc]  # found at run time; Keras has no types
    """A Keras callback that records into ``exp``; see the module's docstring."""

    def __init__(self, exp: Experiment, batches: bool = False):
        super().__init__()
        self.exp = exp
        self.batches = batches
        self.batches_done = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.batches_done += 1
        if self.batches:
            record_numbers(self.exp, logs or {}, self.batches_done, prefix="batch/")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # Shown in the terminal only where Keras shows nothing itself (verbose=0): its own line
        # holds the same values, and is not finished yet (its progress bar ends after this).
        shows = (getattr(self, "params", None) or {}).get("verbose", 1) != 0
        record_numbers(self.exp, logs or {}, int(epoch), log=not shows)
