"""The event schema that the SDK and the server share: the wire protocol's vocabulary.

This module is the only piece of the SDK that the server imports. It holds names, limits and
the envelope builder; it imports nothing but the standard library, so both sides stay light.

An envelope is ``{"type", "timestamp", "sdk_run_uuid", "payload"}`` (the original protocol) with,
in our superset, an optional ``"seq"``: an integer counting from 1 within its run. The server
stores each ``(sdk_run_uuid, seq)`` once.
"""

from __future__ import annotations

import signal
import time
from typing import Any

# --- event types ------------------------------------------------------------------------------
RUN_STARTED = "run_started"
LOG = "log"
HEARTBEAT = "heartbeat"
METRIC = "metric"
PARAM = "param"
RUN_ENDED = "run_ended"
# Our superset: a rule on one of the run's metrics, set from the job (payload: see check_alert).
ALERT = "alert"
EVENT_TYPES = (RUN_STARTED, LOG, HEARTBEAT, METRIC, PARAM, RUN_ENDED, ALERT)

# --- run statuses -----------------------------------------------------------------------------
RUNNING = "running"
SUCCESS = "success"
FAILURE = "failure"
USER_CANCELED = "user_canceled"
KILLED = "killed"
LOST = "lost"  # decided by the server alone, when heartbeats stop
FINAL_STATUSES = (SUCCESS, FAILURE, USER_CANCELED, KILLED)
STATUSES = (RUNNING,) + FINAL_STATUSES + (LOST,)
# Not a status but a filter of the runs lists: the runs someone should look at, those that
# ended badly and the running ones that are stalled (server/stalls.py).
ATTENTION = "attention"
ENDED_BADLY = (FAILURE, KILLED, LOST)
STATUS_FILTERS = STATUSES + (ATTENTION,)

# --- which face sent a run (header x-hyperdash-api) -------------------------------------------
APIS = ("monitor", "experiment", "cli_run", "cli_pipe", "cli_tensorboard", "jupyter")

# --- log streams ------------------------------------------------------------------------------
STDOUT = "stdout"
STDERR = "stderr"
STREAMS = (STDOUT, STDERR)
LEVEL_OF_STREAM = {STDOUT: "INFO", STDERR: "ERROR"}
STREAM_OF_LEVEL = {"INFO": STDOUT, "ERROR": STDERR}

# --- HTTP headers and error codes -------------------------------------------------------------
AUTH_HEADER = "x-hyperdash-auth"
VERSION_HEADER = "x-hyperdash-version"
API_HEADER = "x-hyperdash-api"
# Set to "1" on ingest requests that upload the spool of a process that has ended
# (`hyperdash sync`, the detached uploader): the events are stored, but are no sign of life.
REPLAY_HEADER = "x-hyperdash-replay"
INGEST_PATH = "/api/v1/sdk/http"
# The original clients stop sending for good only on this literal (sic).
API_KEY_REQUIRED = "api_key_requred"

# --- limits -----------------------------------------------------------------------------------
# A line longer than this is split by the SDK into pieces marked "partial" (continued).
MAX_LINE_BYTES = 16 * 1024
# The server refuses a log body longer than this (the original clients send at most 20 KiB); in
# a block of lines, each line.
MAX_LOG_BODY_BYTES = 64 * 1024
# One ingest request: at most this many events (a block of lines counts as its lines), and this
# many bytes of body (else 413).
MAX_BATCH_EVENTS = 10_000
MAX_REQUEST_BYTES = 16 * 1024 * 1024
# A block of lines (a log event whose payload has "lines": N, our superset): its body holds N whole
# lines, each ending in "\n", which take the seqs seq .. seq + N - 1. The SDK cuts blocks at most
# this many bytes long, so that even with every byte of invalid UTF-8 replaced (3 bytes each) a
# block stays under MAX_LOG_BODY_BYTES. It sends blocks only to a server whose ingest replies
# carry ``"log_blocks": true``; until then, one line per event. A block has no limit of its own but
# the request's (each of its lines at most MAX_LOG_BODY_BYTES): one whose text is attached (below)
# is a whole spool record.
LOG_BLOCK_BYTES = MAX_LOG_BODY_BYTES // 4
LINES_FIELD = "lines"
BLOCKS_REPLY_FIELD = "log_blocks"
# A batch may also travel with its log texts as raw bytes after the JSON (our superset): a body
# of this content type is the JSON of the envelopes (on one line), a newline, then the texts, one
# after the other. A log event carrying ``"bytes": N`` in place of ``"body"`` takes the next N
# bytes as its body, read as UTF-8 (an invalid sequence becomes U+FFFD), so that neither side
# spends time quoting a flood of output as JSON. The SDK sends this form only to a server whose
# ingest replies carry ``"attached_text": true``.
ATTACHED_TEXT_TYPE = "application/vnd.hyperdash.attached-text"
TEXT_BYTES_FIELD = "bytes"
ATTACHED_TEXT_REPLY_FIELD = "attached_text"
# Names of params and metrics, and run names.
MAX_NAME_CHARS = 512

# JSON has no NaN nor infinities: a metric point holding one carries its value as one of these
# strings (our superset), so that a rule on the metric still sees it.
NONFINITE_VALUES = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}

# The longest stall window a run may ask for (``stall_after`` in ``run_started``): 30 days.
MAX_STALL_AFTER_S = 30 * 86400.0

DEFAULT_PORT = 4680
DEFAULT_SERVER = f"http://127.0.0.1:{DEFAULT_PORT}"


def now_ms() -> int:
    """The current time in milliseconds since the epoch, as envelopes carry it."""
    return time.time_ns() // 1_000_000


def envelope(
    type: str,
    run_uuid: str,
    payload: dict[str, Any],
    *,
    seq: int | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """Build one wire envelope. ``seq`` is left out for heartbeats and original-style events."""
    env: dict[str, Any] = {
        "type": type,
        "timestamp": now_ms() if timestamp is None else timestamp,
        "sdk_run_uuid": run_uuid,
        "payload": payload,
    }
    if seq is not None:
        env["seq"] = seq
    return env


def signal_name(signum: int) -> str:
    """A signal's name as a run records it (``run_ended``'s ``signal``) and ``kill -l`` spells it:
    ``SIGTERM``; a real-time signal counted from either end, ``SIGRTMIN+3`` or ``SIGRTMAX-2``."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        pass
    low, high = getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", 0)
    if low < signum < high:
        return f"SIGRTMIN+{signum - low}" if signum - low <= (high - low) // 2 else f"SIGRTMAX-{high - signum}"
    return f"SIG{signum}"


def nonfinite_text(value: float) -> str:
    """How a NaN or an infinity travels as a metric's value (a key of NONFINITE_VALUES)."""
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


# --- metric rules -----------------------------------------------------------------------------
ALERT_KEYS = ("metric", "nan", "above", "below", "patience", "minutes", "mode")
ALERT_MODES = ("min", "max")
MAX_PATIENCE_POINTS = 10**9
MAX_PATIENCE_MINUTES = 366 * 24 * 60.0


def _number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and value == value and abs(value) != float("inf")


def check_alert(spec: Any) -> dict[str, Any]:
    """A metric rule's settings checked and made whole, or ValueError saying what is wrong.

    ``spec`` holds ``metric`` (the metric's name) and exactly one kind of rule: ``nan: true``
    (a NaN or infinite value), ``above: X`` or ``below: X`` (a value past a threshold), or
    ``patience: N`` and/or ``minutes: M`` (no improvement for N points or M minutes, with
    ``mode`` ``"min"``, lower is better, the default, or ``"max"``). The result has every key of
    :data:`ALERT_KEYS`, plus ``kind``: ``nan``, ``above``, ``below`` or ``plateau``.
    """
    if not isinstance(spec, dict):
        raise ValueError("a rule must be a JSON object such as {\"metric\": \"loss\", \"above\": 10}")
    unknown = sorted(set(spec) - set(ALERT_KEYS) - {"kind"})
    if unknown:
        raise ValueError(f"unknown rule field {unknown[0]!r}; a rule has {', '.join(ALERT_KEYS)}")
    metric = spec.get("metric")
    if not isinstance(metric, str) or not metric.strip() or len(metric) > MAX_NAME_CHARS:
        raise ValueError(f"a rule needs 'metric', the metric's name (1 to {MAX_NAME_CHARS} characters)")
    nan = spec.get("nan", False)
    if nan is not None and type(nan) is not bool:  # (1 == True: not a test of the value)
        raise ValueError("'nan' must be true or false")
    above, below = spec.get("above"), spec.get("below")
    patience, minutes = spec.get("patience"), spec.get("minutes")
    mode = spec.get("mode")
    for key, value in (("above", above), ("below", below)):
        if value is not None and not _number(value):
            raise ValueError(f"'{key}' must be a finite number")
    if patience is not None and (type(patience) is not int or not 1 <= patience <= MAX_PATIENCE_POINTS):
        raise ValueError(f"'patience' must be a whole number of points from 1 to {MAX_PATIENCE_POINTS}")
    if minutes is not None and (not _number(minutes) or not 0 < minutes <= MAX_PATIENCE_MINUTES):
        raise ValueError(f"'minutes' must be a number of minutes above 0, at most {MAX_PATIENCE_MINUTES:g}")
    if mode is not None and mode not in ALERT_MODES:
        raise ValueError("'mode' must be \"min\" (lower is better) or \"max\" (higher is better)")
    kinds = [kind for kind, given in (("nan", bool(nan)), ("above", above is not None),
                                      ("below", below is not None),
                                      ("plateau", patience is not None or minutes is not None)) if given]
    if len(kinds) != 1:
        raise ValueError("a rule needs exactly one of: nan=true, above, below, or patience/minutes "
                         f"(no improvement){'; this one has ' + ', '.join(kinds) if kinds else ''}")
    if mode is not None and kinds[0] != "plateau":
        raise ValueError("'mode' goes with patience or minutes (no improvement) only")
    def real(value: Any) -> float | None:  # (so that 3 and 3.0 make the same rule)
        return None if value is None else float(value)

    return {"metric": metric, "kind": kinds[0], "nan": bool(nan), "above": real(above), "below": real(below),
            "patience": patience, "minutes": real(minutes),
            "mode": (mode or "min") if kinds[0] == "plateau" else None}


def describe_alert(rule: dict[str, Any]) -> str:
    """A rule (as :func:`check_alert` returns it) in words: ``loss is above 10``."""
    metric, kind = rule["metric"], rule["kind"]
    if kind == "nan":
        return f"{metric} is NaN or infinite"
    if kind in ("above", "below"):
        return f"{metric} is {kind} {rule[kind]:g}"
    spans = []
    if rule["patience"] is not None:
        spans.append(f"{rule['patience']} points")
    if rule["minutes"] is not None:
        spans.append(f"{rule['minutes']:g} min")
    better = "lower" if rule["mode"] == "min" else "higher"
    return f"{metric} has not improved ({better} is better) for {' or '.join(spans)}"
