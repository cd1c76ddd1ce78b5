"""The real ``hyperdash server`` process: local mode, SIGTERM with batches in flight, restart."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests
from server_helpers import env, log

from hyperdash import events


def test_session_server_takes_the_original_protocol(account):
    run = str(uuid.uuid4())
    url = account.server.url + events.INGEST_PATH
    headers = {events.AUTH_HEADER: account.api_key, events.API_HEADER: "experiment"}
    for body in (env("run_started", run, {"job_name": "original"}),
                 env("log", run, {"uuid": "u", "level": "INFO", "body": "hello\n"}),
                 env("run_ended", run, {"final_status": "success"})):
        resp = requests.post(url, json=body, headers=headers, timeout=10)
        assert resp.status_code == 200, resp.text
    found = account.wait_for_run("original", status="success")
    assert found["api"] == "experiment"
    assert [line["text"] for line in account.logs(run)] == ["hello"]


def test_local_mode_sigterm_and_restart_keep_every_acknowledged_batch(server_factory):
    server = server_factory()
    # Local mode: an empty store on loopback made a local account and wrote its key, 0600.
    config_path = server.home / "hyperdash.json"
    config = json.loads(config_path.read_text())
    assert config["server"] == server.url
    assert stat.S_IMODE(os.stat(config_path).st_mode) == 0o600
    first_log = server.log_path.read_text()
    assert f"Hyperdash server on {server.url}" in first_log
    links = re.findall(rf"{re.escape(server.url)}/auth/token\?token=(\S+)", first_log)
    assert len(links) == 1
    key = config["api_key"]
    assert requests.get(server.url + "/api/v1/me", headers={events.AUTH_HEADER: key}, timeout=10).json() == {
        "email": "local@localhost"}

    # Post batches without pause from another thread, and stop the server in the middle.
    run = str(uuid.uuid4())
    acked: list[int] = []

    def sender():
        session = requests.Session()
        for n in range(1000):
            batch = [log(run, n * 100 + k + 1, f"batch {n} line {k}") for k in range(100)]
            try:
                resp = session.post(server.url + events.INGEST_PATH, json=batch,
                                    headers={events.AUTH_HEADER: key}, timeout=10)
            except requests.RequestException:
                return
            if resp.status_code != 200:
                return
            acked.append(n)

    thread = threading.Thread(target=sender)
    thread.start()
    deadline = time.monotonic() + 20
    while len(acked) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc = server.proc
    proc.terminate()
    assert proc.wait(15) == 0
    thread.join(15)
    assert acked, "no batch was acknowledged before the stop"
    assert "Hyperdash server stopped" in server.log_path.read_text()

    server.start()
    lines = requests.get(f"{server.url}/api/v1/runs/{run}/logs", params={"limit": 10000},
                         headers={events.AUTH_HEADER: key}, timeout=10).json()["lines"]
    stored_seqs = {line["seq"] for line in lines}
    for n in acked:
        assert set(range(n * 100 + 1, n * 100 + 101)) <= stored_seqs, f"acknowledged batch {n} is missing"
    # The second start keeps the key file and prints a fresh one-time link.
    assert json.loads(config_path.read_text())["api_key"] == key
    assert len(re.findall(r"/auth/token\?token=", server.log_path.read_text())) == 2


def test_local_mode_keeps_an_existing_key(server_factory, tmp_path):
    server = server_factory(start=False)
    server.home.mkdir(parents=True)
    (server.home / "hyperdash.json").write_text(json.dumps({"api_key": "mine", "other": 1}))
    server.start()
    assert json.loads((server.home / "hyperdash.json").read_text()) == {"api_key": "mine", "other": 1}
    assert "/auth/token?token=" in server.log_path.read_text()


def test_lost_timeout_option(server_factory):
    server = server_factory("--lost-timeout", "0.5")
    account = server.signup()
    run = str(uuid.uuid4())
    resp = requests.post(server.url + events.INGEST_PATH, json=[env("run_started", run, {"job_name": "silent"}, seq=1)],
                         headers={events.AUTH_HEADER: account.api_key}, timeout=10)
    assert resp.status_code == 200
    assert account.wait_for_run("silent", status="lost", timeout=10)["uuid"] == run


def test_sigterm_ends_open_event_streams(server_factory):
    server = server_factory()
    account = server.signup()
    resp = requests.get(server.url + "/api/v1/events", headers={events.AUTH_HEADER: account.api_key},
                        stream=True, timeout=10)
    assert resp.status_code == 200
    lines = resp.iter_lines()
    assert next(lines) == b"retry: 1000"
    proc = server.proc
    started = time.monotonic()
    proc.terminate()
    assert proc.wait(15) == 0
    assert time.monotonic() - started < 8
    resp.close()


@pytest.mark.parametrize("db_url", ["nosuchdb://nowhere", "mysql://someone:secret@localhost/runs"])
def test_unsupported_database_is_one_clear_line(db_url, hyperdash_home):
    proc = subprocess.run([sys.executable, "-m", "hyperdash", "server", "--port", "0", "--db", db_url],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hyperdash server: cannot use the database ")
    assert "sqlite:///" in lines[0] and "postgresql://" in lines[0] and "secret" not in lines[0]


@pytest.mark.parametrize("db_url, said", [
    # (these used to end in a traceback, or in "invalid literal for int()")
    ("postgresql+psycopg2://postgres@127.0.0.1/test", "postgresql+psycopg2:// is not supported: use postgresql://"),
    ("postgresql://::::", "not a database URL: 'postgresql://::::'"),
    # (the password never shown, even in a URL that cannot be read)
    ("postgresql://someone:S3CRET@127.0.0.1:abc/x", "not a database URL: 'postgresql://someone:***@127.0.0.1:abc/x'"),
    # (no file: these used to end in a traceback)
    ("sqlite://", "'sqlite://' names no file"),
    ("sqlite:///:memory:", "'sqlite:///:memory:' names no file"),
])
@pytest.mark.parametrize("command", [["server", "--port", "0"], ["server", "adduser", "--email", "a@example.com",
                                                                  "--password-stdin"]])
def test_a_malformed_database_url_is_one_clear_line(db_url, said, command, hyperdash_home):
    proc = subprocess.run([sys.executable, "-m", "hyperdash", *command, "--db", db_url], capture_output=True,
                          text=True, timeout=60, input="a long password\n")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], proc.stderr


def test_a_second_server_on_the_same_sqlite_file_is_refused(server_factory):
    # It used to start, and half the lines sent to the two of them were lost.
    first = server_factory()
    second = server_factory(start=False)
    second.db_url = first.db_url
    proc = subprocess.run([sys.executable, "-m", "hyperdash", "server", "--port", "0", "--db", first.db_url],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env={**os.environ, "HOME": str(second.home)})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"hyperdash server: another server (pid {first.proc.pid}) serves {first.db_url.removeprefix('sqlite:///')} "
        "already: a SQLite file takes one; stop it first, or use PostgreSQL for several"]
    first.stop()
    second.start()  # the file is free once its server has stopped
    assert requests.get(second.url + "/api/v1/health", timeout=10).json()["ok"] is True


def test_postgresql_without_its_driver_says_what_to_install(hyperdash_home):
    # The driver is installed here; the child hides it as if it were not.
    code = ("import sys; sys.modules['psycopg'] = None\n"
            "from hyperdash.server.main import serve\n"
            "serve(port=0, db_url='postgresql://postgres@127.0.0.1:5432/test')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "hyperdash server: PostgreSQL needs the psycopg driver: pip install 'hyperdash[postgres]'"]


def test_sqlite_store_is_private(tmp_path):
    from hyperdash.server.main import ServerThread

    path = tmp_path / "new-folder" / "hyperdash.db"
    with ServerThread(db_url=f"sqlite:///{path}") as server:
        server.app.state.auth.create_user("someone@example.com", "a long password")
        modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in path.parent.iterdir()}
        assert {"hyperdash.db", "hyperdash.db-wal", "hyperdash.db-shm"} <= set(modes)
        assert set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


# What the server may import of the SDK: the event schema, the home folder and settings file,
# and the exceptions they raise; none of them imports anything beyond the standard library.
SHARED = ("events", "settings", "errors", "plaintext", "server")


def test_server_imports_only_the_dependency_free_shared_pieces_of_the_sdk():
    import ast
    import importlib.metadata
    from pathlib import Path

    import hyperdash.server

    outside = []
    for source in Path(hyperdash.server.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                names = [node.module] if node.module else [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hyperdash."):
                names = [node.module.split(".")[1]]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".")[1] for a in node.names if a.name.startswith("hyperdash.")]
            else:
                continue
            outside += [f"{source.name}: {name}" for name in names if name not in SHARED]
    assert outside == []
    assert hyperdash.server.__version__ == importlib.metadata.version("hyperdash")
    # ...and those import nothing but the standard library and each other.
    beyond = []
    for name in SHARED[:-1]:
        source = Path(hyperdash.server.__file__).parent.parent / f"{name}.py"
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module.split(".")[0]]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            else:
                continue
            beyond += [f"{name}.py: {n}" for n in names if n not in SHARED and n not in sys.stdlib_module_names]
    assert beyond == []


def test_local_mode_makes_a_private_home(tmp_path, monkeypatch):
    from hyperdash.server.main import ServerThread

    home = tmp_path / "fresh-home"
    monkeypatch.setenv("HYPERDASH_HOME", str(home))
    with ServerThread(local_mode=True) as server:
        assert server.sign_in_link.startswith(f"{server.url}/auth/token?token=")
        key = json.loads((home / "hyperdash.json").read_text())["api_key"]
        assert requests.get(server.url + "/api/v1/me", headers={events.AUTH_HEADER: key}, timeout=10).ok
        # The store went to the default place under the same home.
        assert (home / "hyperdash.db").exists()
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(home / "hyperdash.json").st_mode) == 0o600


def test_a_home_given_with_a_tilde_is_the_same_folder_for_the_server_and_the_sdk(tmp_path, monkeypatch):
    from hyperdash import config
    from hyperdash.server.main import ServerThread

    user, cwd = tmp_path / "user", tmp_path / "cwd"
    user.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.setenv("HYPERDASH_HOME", "~/x")
    monkeypatch.chdir(cwd)
    with ServerThread(local_mode=True) as server:
        # The store and the local account's key went to ~/x, where the SDK looks for them.
        assert (user / "x" / "hyperdash.db").exists()
        assert config.settings_path() == user / "x" / "hyperdash.json"
        key = config.load_settings()["api_key"]
        assert requests.get(server.url + "/api/v1/me", headers={events.AUTH_HEADER: key}, timeout=10).ok
    assert list(cwd.iterdir()) == []  # no folder named "~" beside it
