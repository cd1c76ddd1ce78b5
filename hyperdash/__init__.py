"""Hyperdash: monitor long-running jobs, machine-learning training above all.

    from hyperdash import monitor

    @monitor("dogs vs. cats")
    def train():
        print("Epoch 1, accuracy: 50%")

The server lives in :mod:`hyperdash.server` (the ``server`` extra) and is never imported here.
"""

from typing import TYPE_CHECKING

from . import errors as errors  # (``except hyperdash.errors.HyperdashError`` after ``import hyperdash``)
from .monitor import monitor
from .version import __version__

if TYPE_CHECKING:  # imported on first use at run time (see __getattr__)
    from .experiment import Experiment
    from .magic import load_ipython_extension, monitor_cell

__all__ = ["__version__", "monitor", "Experiment", "monitor_cell", "load_ipython_extension"]

# Where the public names that are imported on first use live: a process that needs only a part
# of the package (the detached uploader, the CLI) does not pay for the rest. The magic in
# particular: `import hyperdash` works without IPython, and importing `monitor_cell` inside
# IPython is what registers %%monitor_cell, as the original did.
_LAZY = {"Experiment": "experiment", "monitor_cell": "magic", "load_ipython_extension": "magic"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hyperdash' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
