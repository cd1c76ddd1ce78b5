"""Fixtures shared by every test: an isolated Hyperdash home, and real servers on loopback ports.

``hyperdash_server`` is one real ``hyperdash server`` process for the whole session; tests get
their own account on it (``account``), so they never see each other's runs. ``server_factory``
starts servers a test owns, for tests that stop, restart or break them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Account:
    """A user on a test server, with its API key and an access token."""

    server: ServerProcess
    email: str
    password: str
    api_key: str

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.server.session.get(
            self.server.url + path, headers={"x-hyperdash-auth": self.api_key}, timeout=10, **kwargs
        )

    def runs(self, **params) -> list[dict]:
        resp = self.get("/api/v1/runs", params=params)
        resp.raise_for_status()
        return resp.json()["runs"]

    def run(self, run_uuid: str) -> dict:
        resp = self.get(f"/api/v1/runs/{run_uuid}")
        resp.raise_for_status()
        return resp.json()

    def logs(self, run_uuid: str) -> list[dict]:
        """Every log line of a run, in order, following the pages."""
        lines: list[dict] = []
        after = 0
        while True:
            resp = self.get(f"/api/v1/runs/{run_uuid}/logs", params={"after": after, "limit": 10000})
            resp.raise_for_status()
            page = resp.json()["lines"]
            if not page:
                return lines
            lines.extend(page)
            after = page[-1]["seq"]

    def wait_for(self, predicate, timeout: float = 15.0, interval: float = 0.1):
        """Poll ``predicate()`` until it returns something truthy; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")

    def wait_for_run(self, name: str, status: str | None = None, timeout: float = 15.0) -> dict:
        """The newest run called ``name``, once it exists (and has ``status``, if given)."""

        def find():
            for run in self.runs(name=name):
                if run["name"] == name and (status is None or run["status"] == status):
                    return run
            return None

        return self.wait_for(find, timeout)

    def stop_run(self, run_uuid: str) -> None:
        """Ask the run to stop, as ``hyperdash stop`` does (accepted: 202)."""
        resp = self.server.session.post(f"{self.server.url}/api/v1/runs/{run_uuid}/stop",
                                        headers={"x-hyperdash-auth": self.api_key}, timeout=10)
        assert resp.status_code == 202, resp.text

    def wait_until_ended(self, run_uuid: str, timeout: float = 15.0) -> dict:
        """The run once it is no longer running."""
        return self.wait_for(lambda: (run := self.run(run_uuid))["status"] != "running" and run, timeout)

    def sdk_env(self, home: Path) -> dict[str, str]:
        """Environment for a child process that reports to this server as this account."""
        env = dict(os.environ)
        env.update(
            HYPERDASH_SERVER=self.server.url,
            HYPERDASH_API_KEY=self.api_key,
            HYPERDASH_HOME=str(home),
            PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        )
        return env


@dataclass
class ServerProcess:
    """A real ``hyperdash server`` child process on a loopback port."""

    db_url: str
    home: Path
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        env = dict(os.environ, HYPERDASH_HOME=str(self.home))
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hyperdash", "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--db", self.db_url, *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hyperdash server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):  # a loaded machine: not up yet
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"hyperdash server did not answer in {timeout}s: {self.log_path.read_text()[-3000:]}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def signup(self, email: str | None = None, password: str = "correct horse battery") -> Account:
        email = email or f"user-{uuid.uuid4().hex[:12]}@example.com"
        resp = self.session.post(
            self.url + "/api/v1/users", json={"email": email, "password": password}, timeout=10
        )
        assert resp.status_code in (200, 201), resp.text
        return Account(self, email, password, resp.json()["api_key"])


def _ignore_without_passing_it_on(signum, frame) -> None:
    """A handler that does nothing: this process still ignores the signal, but a program it
    starts meets the signal's default action (exec resets handlers, never an ignored signal)."""


def pytest_configure(config) -> None:
    # A suite started in the background (`pytest &` in a script, nohup) ignores SIGINT or
    # SIGHUP, and every job a test starts would inherit that: the job, rightly left alone by
    # hyperdash, would never react to the signal the test sends it. The suite keeps ignoring
    # them; the jobs start with them at their default, as from a terminal.
    for signum in (signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_IGN:
            signal.signal(signum, _ignore_without_passing_it_on)


@pytest.fixture(autouse=True)
def hyperdash_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own Hyperdash home, so nothing touches the real ~/.hyperdash."""
    home = tmp_path / "hyperdash-home"
    home.mkdir()
    monkeypatch.setenv("HYPERDASH_HOME", str(home))
    for var in ("HYPERDASH_API_KEY", "HYPERDASH_SERVER"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def hyperdash_server(tmp_path_factory) -> ServerProcess:
    """One real server for the whole session, on SQLite."""
    home = tmp_path_factory.mktemp("server-home")
    server = ServerProcess(db_url=f"sqlite:///{home / 'hyperdash.db'}", home=home).start()
    yield server
    server.stop()


@pytest.fixture
def account(hyperdash_server) -> Account:
    """A fresh account on the session's server."""
    return hyperdash_server.signup()


@pytest.fixture
def server_factory(tmp_path):
    """Start servers that this test owns (to stop, restart or misconfigure them)."""
    started: list[ServerProcess] = []

    def make(*extra_args: str, port: int | None = None, start: bool = True) -> ServerProcess:
        home = tmp_path / f"server-{len(started)}"
        server = ServerProcess(
            db_url=f"sqlite:///{home / 'hyperdash.db'}", home=home, extra_args=tuple(extra_args)
        )
        if port is not None:
            server.port = port
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.stop()
