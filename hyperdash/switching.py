"""The interpreter's switch interval while a run is monitored in the job's own process.

The SDK's threads (the pump, the shipper, the system sampler) spend their time waiting, and
need the GIL only for moments: after each read of output, each system call of a request. A job
busy in pure Python keeps the GIL for the whole switch interval each time another thread asks
for it (5 ms by default), and a request or an import, made of dozens of system calls, then takes
seconds: a training loop's first lines would reach the server long after they were printed.
While any run lives in a process, its switch interval is at most :data:`RUN_SWITCH_INTERVAL`; it
goes back to what it was when the last run ends, unless the job set one of its own meanwhile.
A job whose threads never wait for the GIL is not interrupted more often: the interval only
bounds how long a thread that asked for the GIL waits.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable

__all__ = ["shorten_switch_interval", "RUN_SWITCH_INTERVAL"]

# The longest switch interval while a run lives (seconds).
RUN_SWITCH_INTERVAL = 0.001

_lock = threading.Lock()
_holders = 0
_saved: float | None = None  # the interval before the first holder shortened it, if it did


def shorten_switch_interval() -> Callable[[], None]:
    """Make the switch interval at most :data:`RUN_SWITCH_INTERVAL` until the function this
    returns is called (once). Any number of runs may hold it at once."""
    global _holders, _saved
    with _lock:
        _holders += 1
        if _holders == 1:
            current = sys.getswitchinterval()
            _saved = current if current > RUN_SWITCH_INTERVAL else None
            if _saved is not None:
                sys.setswitchinterval(RUN_SWITCH_INTERVAL)
    released = False

    def release() -> None:
        global _holders, _saved
        nonlocal released
        with _lock:
            if released:
                return
            released = True
            _holders -= 1
            if _holders == 0 and _saved is not None:
                if math.isclose(sys.getswitchinterval(), RUN_SWITCH_INTERVAL):  # (not the job's own since)
                    sys.setswitchinterval(_saved)
                _saved = None

    return release
