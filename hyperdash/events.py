"""The event schema that the SDK and the server share: the wire protocol's vocabulary.

This module is the only piece of the SDK that the server imports. It holds names, limits and
the envelope builder; it imports nothing but the standard library, so both sides stay light.

An envelope is ``{"type", "timestamp", "sdk_run_uuid", "payload"}`` (the original protocol) with,
in our superset, an optional ``"seq"``: an integer counting from 1 within its run. The server
stores each ``(sdk_run_uuid, seq)`` once.
"""

from __future__ import annotations

import time
from typing import Any

# --- event types ------------------------------------------------------------------------------
RUN_STARTED = "run_started"
LOG = "log"
HEARTBEAT = "heartbeat"
METRIC = "metric"
PARAM = "param"
RUN_ENDED = "run_ended"
EVENT_TYPES = (RUN_STARTED, LOG, HEARTBEAT, METRIC, PARAM, RUN_ENDED)

# --- run statuses -----------------------------------------------------------------------------
RUNNING = "running"
SUCCESS = "success"
FAILURE = "failure"
USER_CANCELED = "user_canceled"
KILLED = "killed"
LOST = "lost"  # decided by the server alone, when heartbeats stop
FINAL_STATUSES = (SUCCESS, FAILURE, USER_CANCELED, KILLED)
STATUSES = (RUNNING,) + FINAL_STATUSES + (LOST,)

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
# The server refuses a log body longer than this (the original clients send at most 20 KiB).
MAX_LOG_BODY_BYTES = 64 * 1024
# One ingest request: at most this many envelopes, and this many bytes of body (else 413).
MAX_BATCH_EVENTS = 10_000
MAX_REQUEST_BYTES = 16 * 1024 * 1024
# Names of params and metrics, and run names.
MAX_NAME_CHARS = 512

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
