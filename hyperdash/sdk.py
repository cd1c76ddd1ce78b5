"""The original SDK's import path: ``from hyperdash.sdk import monitor`` keeps working."""

from .experiment import Experiment
from .monitor import monitor

__all__ = ["monitor", "Experiment"]
