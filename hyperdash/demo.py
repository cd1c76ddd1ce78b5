"""``hyperdash demo``: Hyperdash at work on one machine, with nothing set up beforehand.

Where a server answers at the configured address, a short demo job reports to it. Where none
does, a server starts in this process on the default local store (local mode: a local account,
its key written to hyperdash.json when there is none yet, a one-time sign-in link), the demo job
reports to it, and it serves the dashboard until Ctrl-C.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from . import config
from .errors import AuthenticationError, DemoError, HyperdashError
from .events import DEFAULT_PORT, STDERR, STDOUT, SUCCESS
from .transport import Transport

if TYPE_CHECKING:
    from .server.main import ServerThread

__all__ = ["main", "run_demo_job", "DEMO_RUN_NAME", "DemoError"]

DEMO_RUN_NAME = "demo: tiny classifier"


def main(port: int | None = None, steps: int = 30, step_seconds: float = 0.15) -> None:
    """Run the demo; see the module's docstring. ``port=None``: the configured address's port."""
    url = config.server_url()
    if _answers(url):
        key = config.api_key()
        if not key:
            raise DemoError(f"a server answers at {url}, but no API key is configured: "
                            "run `hyperdash login` (or `hyperdash signup`)")
        click.echo(f"Open the dashboard at {url} to see the run {DEMO_RUN_NAME!r}.")
        run_demo_job(url, key, steps=steps, step_seconds=step_seconds)
        return
    _serve_demo(url, port, steps, step_seconds)


def _answers(url: str) -> bool:
    try:
        Transport(url, timeout=(1.0, 3.0)).health()
        return True
    except HyperdashError:
        return False


def _serve_demo(configured_url: str, port: int | None, steps: int, step_seconds: float) -> None:
    try:
        from .server.main import ServerThread
    except ImportError as exc:
        raise DemoError(f"the demo needs the server extra ({exc.name} is missing): "
                        "pip install 'hyperdash[server]'") from None
    if port is None:
        parts = urlsplit(configured_url)
        port = parts.port if parts.hostname in ("127.0.0.1", "localhost") and parts.port else DEFAULT_PORT
    click.echo(f"No server answers at {configured_url}: starting one on 127.0.0.1:{port}, "
               f"store in {config.home_dir()}.")
    from .server.dialect import checked_url
    from .server.main import hold_sqlite_store
    from .server.store import default_db_url

    try:
        held = hold_sqlite_store(checked_url(default_db_url()))
    except ValueError as exc:
        raise DemoError(f"No server answers at {configured_url}, and {exc}") from None
    try:
        server = ServerThread(host="127.0.0.1", port=port, local_mode=True).start()
    except OSError as exc:
        if held is not None:
            os.close(held)
        raise DemoError(f"{exc}: stop what uses that port, or choose another with --port") from None
    try:
        # The demo's runs go to this server, whatever else hyperdash.json names.
        os.environ["HYPERDASH_SERVER"] = server.url
        key = _working_key(server)
        # Where to watch, before the job starts: it is there to be watched live.
        click.echo(f"Dashboard: {server.url}")
        if server.sign_in_link:
            click.echo(f"Sign in with this one-time link: {server.sign_in_link}")
        if key is None:
            click.echo("No API key of this server is configured; skipping the demo job "
                       "(run `hyperdash signup` to make one).", err=True)
        else:
            run_demo_job(server.url, key, steps=steps, step_seconds=step_seconds)
        stop = _ctrl_c_event()  # before the line that invites Ctrl-C: one pressed at once is heard
        click.echo("Serving until Ctrl-C.")
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        if held is not None:
            os.close(held)
    click.echo("Server stopped.")


def _working_key(server: ServerThread) -> str | None:
    """The configured key when this server accepts it, else a new key of the local account."""
    key = config.api_key()
    if key:
        try:
            Transport(server.url, api_key=key).request("GET", "/api/v1/me")
            return key
        except (AuthenticationError, HyperdashError):
            pass
    auth = server.app.state.auth
    local = auth.local_user()
    return auth.create_api_key(local.id, "demo")["api_key"] if local is not None else None


def _ctrl_c_event() -> threading.Event:
    """An event set by the next SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def run_demo_job(server_url: str, api_key: str, *, steps: int = 30, step_seconds: float = 0.15) -> str:
    """A short training-like job, monitored: log lines, params, metrics. Returns its run uuid."""
    from .run import Run

    os.environ["HYPERDASH_SERVER"] = server_url
    rng = random.Random(7)
    run = Run(DEMO_RUN_NAME, api="experiment", api_key_getter=lambda: api_key).start()

    def log(text: str, stream: str = STDOUT) -> None:
        (sys.stderr if stream == STDERR else sys.stdout).write(text)
        run.write(stream, text.encode())

    log(f"Training a tiny classifier ({steps} epochs); watch it live on the dashboard.\n")
    learning_rate = run.param("learning_rate", 0.05)
    run.param("batch_size", 64)
    run.param("optimizer", "sgd")
    for epoch in range(1, steps + 1):
        loss = 2.0 * math.exp(-epoch * learning_rate * 2.5) + rng.uniform(0, 0.05)
        accuracy = 1.0 - loss / 2.4
        run.metric("loss", round(loss, 4), step=epoch, log=False)
        run.metric("accuracy", round(accuracy, 4), step=epoch, log=False)
        log(f"epoch {epoch:3d}/{steps}  loss {loss:.4f}  accuracy {accuracy:6.1%}\n")
        if epoch == steps // 2:
            log("\x1b[33mwarning: learning rate plateau, keeping 0.05\x1b[0m\n", STDERR)
        time.sleep(step_seconds)
    log("\x1b[32mdone\x1b[0m\n")
    sys.stdout.flush()
    run.end(SUCCESS, exit_code=0)
    return run.uuid
