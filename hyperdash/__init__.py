"""Hyperdash: monitor long-running jobs, machine-learning training above all.

    from hyperdash import monitor

    @monitor("dogs vs. cats")
    def train():
        print("Epoch 1, accuracy: 50%")

The server lives in :mod:`hyperdash.server` (the ``server`` extra) and is never imported here.
"""

from typing import TYPE_CHECKING

from .experiment import Experiment
from .monitor import monitor
from .version import __version__

if TYPE_CHECKING:  # imported on first use at run time (see __getattr__)
    from .magic import load_ipython_extension, monitor_cell

__all__ = ["__version__", "monitor", "Experiment", "monitor_cell", "load_ipython_extension"]


def __getattr__(name: str) -> object:
    # The magic is imported lazily: `import hyperdash` works without IPython, and importing
    # `monitor_cell` inside IPython is what registers %%monitor_cell, as the original did.
    if name in ("monitor_cell", "load_ipython_extension"):
        from . import magic

        return getattr(magic, name)
    raise AttributeError(f"module 'hyperdash' has no attribute {name!r}")
