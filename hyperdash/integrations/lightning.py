"""PyTorch Lightning: a logger for ``Trainer(logger=...)``.

::

    from hyperdash.integrations.lightning import HyperdashLogger

    trainer = Trainer(max_epochs=10, logger=HyperdashLogger("mnist"))
    trainer.fit(model, data)

``HyperdashLogger("mnist")`` starts a run of that name when Lightning first logs, and ends it
when training ends (``success``; ``failure`` with the exception that ended it, traceback in the
log; ``user_canceled`` after Ctrl-C or a stop; a later ``trainer.test`` that logs is a run of its
own); ``HyperdashLogger(exp)`` records into an Experiment of your own, which you end. The module's hyperparameters
(``self.save_hyperparameters()``) become params, nested ones flattened with dots; each logged
metric (``self.log("train_loss", loss)``) is a metric with Lightning's step. Only the main
process (rank zero) records. Works with ``lightning`` (``lightning.pytorch``) or, without it,
``pytorch_lightning``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from ..experiment import Experiment, scoped_experiment
from . import record_numbers


def _lightning() -> tuple[Any, Any, Any]:
    """Lightning's ``Logger``, ``rank_zero_experiment`` and ``rank_zero_only``: from
    ``lightning.pytorch``, else ``pytorch_lightning``."""
    for package in ("lightning.pytorch", "pytorch_lightning"):
        try:
            loggers = importlib.import_module(f"{package}.loggers.logger")
            utilities = importlib.import_module(f"{package}.utilities")
        except ImportError:
            continue
        return loggers.Logger, loggers.rank_zero_experiment, utilities.rank_zero_only
    raise ImportError("hyperdash.integrations.lightning needs Lightning: pip install lightning")


Logger, _rank_zero_experiment, _rank_zero_only = _lightning()
F = TypeVar("F", bound=Callable[..., Any])


def rank_zero_only(func: F) -> F:
    """Lightning's ``rank_zero_only``: ``func`` runs in the main process alone."""
    return cast(F, _rank_zero_only(func))


def rank_zero_experiment(func: F) -> F:
    """Lightning's ``rank_zero_experiment``: other processes get a stand-in experiment."""
    return cast(F, _rank_zero_experiment(func))

__all__ = ["HyperdashLogger"]


class HyperdashLogger(Logger):  # type: ignore[misc,valid-type]  # Lightning is found at run time
    """A Lightning logger that records into a run; see the module's docstring."""

    def __init__(self, run: str | Experiment, **experiment_options: Any):
        super().__init__()
        if isinstance(run, Experiment):
            if experiment_options:
                raise TypeError("experiment options are for a run that the logger starts, not for an "
                                "Experiment passed in")
            self._exp: Experiment | None = run
            self._owned = False
            self._name = run.name
        elif isinstance(run, str) and run.strip():
            self._exp = None
            self._owned = True
            self._name = run
        else:
            raise TypeError(f"HyperdashLogger takes a run name or an Experiment, not {run!r}")
        self._options = experiment_options

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._exp.run_uuid if self._exp is not None else ""

    @property
    @rank_zero_experiment
    def experiment(self) -> Experiment:
        """The Experiment that the logger records into (started on first use)."""
        if self._exp is None:
            self._exp = scoped_experiment(self._name, **self._options)
        return self._exp

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | argparse.Namespace, *args: Any, **kwargs: Any) -> None:
        values = vars(params) if isinstance(params, argparse.Namespace) else dict(params)
        if values:
            self.experiment.params(values, log=False)  # (flattened there)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        record_numbers(self.experiment, metrics, step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if not self._owned or self._exp is None:
            return
        exp, self._exp = self._exp, None  # a later fit or test that logs is a run of its own
        if status == "success":
            exp.end()
            return
        # Lightning calls this from the except block that caught what ended training: Ctrl-C
        # or a stop (KeyboardInterrupt) is user_canceled, a failure is that exception, with its
        # traceback in the log (the run has ended by the time Python prints it).
        caught = sys.exc_info()[1]
        if caught is not None:
            exp.end_with_exception(caught)
        else:
            exp.end_with_exception(RuntimeError(f"Lightning ended training: {status}"), log_traceback=False)
