"""Local mode's sign-in links and set-up, with real server processes: links expire in minutes,
a new start revokes the earlier ones, a server that is not in local mode refuses the password-less
local account, and a store it cannot write is one clear line."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import requests
from sqlalchemy import create_engine, select

from hyperdash import events
from hyperdash.server.main import ServerThread
from hyperdash.server.store import tokens
from hyperdash.server.tokens import LOGIN_TOKEN_SECONDS


def _links(server) -> list[str]:
    return re.findall(rf"{re.escape(server.url)}/auth/token\?token=\S+", server.log_path.read_text())


def _sign_in(link: str) -> requests.Response:
    return requests.get(link, allow_redirects=False, timeout=30)


def test_a_new_start_revokes_earlier_links_which_expire_in_minutes(server_factory):
    server = server_factory()
    server.stop()
    server.start()
    first, second = _links(server)
    refused = _sign_in(first)
    assert refused.status_code == 400 and "expired or was used" in refused.text
    signed_in = _sign_in(second)
    assert signed_in.status_code == 303 and "hyperdash_session" in signed_in.cookies
    assert _sign_in(second).status_code == 400  # once only
    engine = create_engine(server.db_url)
    with engine.connect() as conn:
        lives = {r.expires_at - r.created_at for r in conn.execute(select(tokens).where(tokens.c.kind == "login"))}
    engine.dispose()
    assert LOGIN_TOKEN_SECONDS == 15 * 60 and lives == {LOGIN_TOKEN_SECONDS * 1000}


def test_a_server_not_in_local_mode_refuses_the_local_account(server_factory):
    server = server_factory()
    session = _sign_in(_links(server)[0]).cookies["hyperdash_session"]
    server.stop()
    server.start()  # prints a link nobody used
    unused = _links(server)[-1]
    key = json.loads((server.home / "hyperdash.json").read_text())["api_key"]
    assert requests.get(server.url + "/api/v1/me", cookies={"hyperdash_session": session}, timeout=10).ok
    server.stop()
    # The same store served as on 0.0.0.0 (here on loopback, where tests listen): no local mode.
    with ServerThread(db_url=server.db_url, port=server.port) as network:
        assert network.url == server.url
        refused = _sign_in(unused)
        assert refused.status_code == 400 and "hyperdash_session" not in refused.cookies
        me = requests.get(network.url + "/api/v1/me", cookies={"hyperdash_session": session}, timeout=10)
        assert me.status_code == 401
        # Its API key, a secret in a private file on this machine, still serves the jobs using it.
        assert requests.get(network.url + "/api/v1/me", headers={events.AUTH_HEADER: key},
                            timeout=10).json() == {"email": "local@localhost"}


def test_a_read_only_store_in_local_mode_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # (the store makes the folder of a "file:" path, relative)
    path = tmp_path / "made.db"
    ServerThread(db_url=f"sqlite:///{path}").stop()  # a store with its schema and no account
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    proc = subprocess.run([sys.executable, "-m", "hyperdash", "server", "--port", "0", "--db", read_only],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hyperdash server: cannot write to the database ")
    assert lines[0].endswith("attempt to write a readonly database")

