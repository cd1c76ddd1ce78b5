"""XGBoost: each round's evaluation results.

::

    from hyperdash import Experiment
    from hyperdash.integrations.xgboost import HyperdashCallback

    with Experiment("churn") as exp:
        xgb.train(params, dtrain, num_boost_round=100, evals=[(dtrain, "train"), (dvalid, "valid")],
                  callbacks=[HyperdashCallback(exp)])

Each evaluation is a metric named as XGBoost prints it (``train-logloss``, ``valid-auc``), with
the round as its step; in ``xgb.cv``, the mean across folds. The scikit-learn wrappers take it
too: ``XGBClassifier(callbacks=[HyperdashCallback(exp)])``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xgboost.callback import TrainingCallback

from . import record_numbers

if TYPE_CHECKING:
    from ..experiment import Experiment

__all__ = ["HyperdashCallback"]


class HyperdashCallback(TrainingCallback):
    """An XGBoost training callback that records into ``exp``; see the module's docstring."""

    def __init__(self, exp: Experiment):
        super().__init__()
        self.exp = exp

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, dict[str, list[Any]]]) -> bool:
        latest = {}
        for data, metrics in evals_log.items():
            for metric, history in metrics.items():
                if history:
                    value = history[-1]
                    latest[f"{data}-{metric}"] = value[0] if isinstance(value, tuple) else value  # cv: (mean, std)
        record_numbers(self.exp, latest, int(epoch))
        return False  # never the reason training stops
