"""Hugging Face Transformers: the training arguments as params, the trainer's logs as metrics.

::

    from hyperdash import Experiment
    from hyperdash.integrations.transformers import HyperdashCallback

    with Experiment("bert-finetune") as exp:
        trainer = Trainer(model=model, args=args, train_dataset=train,
                          callbacks=[HyperdashCallback(exp)])
        trainer.train()

When training begins, every field of ``TrainingArguments`` becomes a param under ``args.``;
each time the trainer logs (``loss``, ``learning_rate``, ``grad_norm``, ``eval_loss``, ...),
each number becomes a metric with the trainer's global step as its step. In distributed
training, only the main process records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from . import record_numbers

if TYPE_CHECKING:
    from ..experiment import Experiment

__all__ = ["HyperdashCallback"]


class HyperdashCallback(TrainerCallback):
    """A Transformers ``TrainerCallback`` that records into ``exp``; see the module's docstring."""

    def __init__(self, exp: Experiment):
        self.exp = exp

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.exp.params({"args": args.to_dict()}, log=False)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if state.is_world_process_zero and logs:
            record_numbers(self.exp, logs, int(state.global_step))
