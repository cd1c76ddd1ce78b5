"""signup, login and keys as a person (or a script) uses them, against the real server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cli_support import HYPERDASH, bare_env


def hyperdash(home, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """``python -m hyperdash ARGS`` with ``home`` as its Hyperdash home and nothing else set."""
    return subprocess.run(
        [*HYPERDASH, *args], input=input, capture_output=True, text=True, env=bare_env(home), timeout=60
    )


def key_works(server, key: str) -> bool:
    resp = requests.get(server.url + "/api/v1/runs", headers={"x-hyperdash-auth": key}, timeout=10)
    assert resp.status_code in (200, 401), resp.text
    return resp.status_code == 200


def test_signup_login_and_key_rotation(hyperdash_server, tmp_path):
    home = tmp_path / "fresh-home"  # does not exist yet: signup creates it, private
    email = f"cli-{uuid.uuid4().hex[:10]}@example.com"
    settings = home / "hyperdash.json"

    result = hyperdash(home, "signup", "--server", hyperdash_server.url, "--email", email,
                       "--password-stdin", input="correct horse battery\n")
    assert result.returncode == 0, result.stderr
    saved = json.loads(settings.read_text())
    assert saved["server"] == hyperdash_server.url
    assert key_works(hyperdash_server, saved["api_key"])
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700

    # Other settings survive every later write.
    settings.write_text(json.dumps({**saved, "my_setting": [1, 2]}))

    result = hyperdash(home, "signup", "--email", email, "--password-stdin", input="another password\n")
    assert result.returncode == 1
    assert result.stderr == (
        f"hyperdash: an account with {email} exists already on {hyperdash_server.url}: run `hyperdash login`\n"
    )

    result = hyperdash(home, "login", "--email", email, "--password-stdin", input="wrong password\n")
    assert result.returncode == 1
    assert result.stderr == f"hyperdash: wrong email or password for {hyperdash_server.url}\n"
    assert json.loads(settings.read_text())["api_key"] == saved["api_key"]  # unchanged

    result = hyperdash(home, "login", "--email", email, "--password-stdin", input="correct horse battery\n")
    assert result.returncode == 0, result.stderr
    after_login = json.loads(settings.read_text())
    assert after_login["my_setting"] == [1, 2] and after_login["server"] == hyperdash_server.url
    assert after_login["api_key"] != saved["api_key"] and key_works(hyperdash_server, after_login["api_key"])

    listed = hyperdash(home, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 3  # a header, the signup's key, the login's key

    created = hyperdash(home, "keys", "create", "--name", "rotated", "--install")
    assert created.returncode == 0, created.stderr
    new_key = created.stdout.strip()
    assert json.loads(settings.read_text())["api_key"] == new_key and key_works(hyperdash_server, new_key)

    # Revoke the login's key by the id that `keys list` shows for it.
    keys = requests.get(hyperdash_server.url + "/api/v1/users/api_keys",
                        headers={"x-hyperdash-auth": new_key}, timeout=10).json()["api_keys"]
    old = next(k for k in keys if after_login["api_key"].startswith(k["prefix"]))
    assert str(old["id"]) in hyperdash(home, "keys", "list").stdout
    revoked = hyperdash(home, "keys", "revoke", str(old["id"]))
    assert revoked.returncode == 0, revoked.stderr
    assert not key_works(hyperdash_server, after_login["api_key"])
    assert key_works(hyperdash_server, new_key)


def test_signup_prompts_for_email_and_a_hidden_confirmed_password(hyperdash_server, tmp_path):
    home = tmp_path / "home"
    email = f"prompt-{uuid.uuid4().hex[:10]}@example.com"
    password = "typed at the prompt"
    result = hyperdash(home, "signup", "--server", hyperdash_server.url,
                       input=f"{email}\n{password}\n{password}\n")
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr  # hidden: not echoed
    assert "Repeat for confirmation" in result.stderr
    assert key_works(hyperdash_server, json.loads((home / "hyperdash.json").read_text())["api_key"])


def test_a_short_password_is_refused_with_the_servers_rule_before_any_request(hyperdash_server, tmp_path):
    home = tmp_path / "home"
    result = hyperdash(home, "signup", "--server", hyperdash_server.url, "--email", "short@example.com",
                       "--password-stdin", input="short\n")
    assert result.returncode == 1
    assert result.stderr.startswith("hyperdash: ") and "8" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (home / "hyperdash.json").exists()


def settings_of(home) -> dict:
    return json.loads((home / "hyperdash.json").read_text())


def signed_up(server, home) -> dict:
    """Sign up a new account with ``hyperdash signup`` in ``home``; the settings it saved."""
    email = f"cli-{uuid.uuid4().hex[:10]}@example.com"
    result = hyperdash(home, "signup", "--server", server.url, "--email", email,
                       "--password-stdin", input="correct horse battery\n")
    assert result.returncode == 0, result.stderr
    return settings_of(home)


def test_keys_work_after_the_configured_key_is_revoked(hyperdash_server, tmp_path):
    home = tmp_path / "home"
    configured = signed_up(hyperdash_server, home)["api_key"]
    keys = requests.get(hyperdash_server.url + "/api/v1/users/api_keys",
                        headers={"x-hyperdash-auth": configured}, timeout=10).json()["api_keys"]
    (own,) = keys

    # Revoke the very key this machine is configured with: key management goes on with the
    # access token of the signup, so the key can be replaced without signing in again.
    revoked = hyperdash(home, "keys", "revoke", str(own["id"]))
    assert revoked.returncode == 0, revoked.stderr
    assert not key_works(hyperdash_server, configured)
    listed = hyperdash(home, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[-1] == "REVOKED"
    assert row.split()[0] == str(own["id"]) and not row.endswith(" -")  # shown as revoked, with when
    created = hyperdash(home, "keys", "create", "--install")
    assert created.returncode == 0, created.stderr
    assert settings_of(home)["api_key"] == created.stdout.strip()
    assert key_works(hyperdash_server, created.stdout.strip())


@contextlib.contextmanager
def recording_relay(target: str):
    """A loopback HTTP relay to the real server at ``target`` that notes which credentials each
    request carried: yields ``(url, seen)``, ``seen`` a list of ``(path, api key, authorization)``."""
    seen: list[tuple[str, str | None, str | None]] = []

    class Relay(BaseHTTPRequestHandler):
        def relay(self) -> None:
            seen.append((self.path, self.headers.get("x-hyperdash-auth"), self.headers.get("authorization")))
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            resp = requests.request(self.command, target + self.path, data=body, headers=headers, timeout=10)
            self.send_response(resp.status_code)
            self.send_header("content-type", resp.headers.get("content-type", "application/json"))
            self.send_header("content-length", str(len(resp.content)))
            self.end_headers()
            self.wfile.write(resp.content)

        do_GET = do_POST = do_DELETE = relay

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_account_calls_carry_the_access_token_alone(hyperdash_server, tmp_path):
    """As the original clients do: an API key that was revoked cannot get in the way."""
    home = tmp_path / "home"
    saved = signed_up(hyperdash_server, home)
    with recording_relay(hyperdash_server.url) as (relay_url, seen):
        (home / "hyperdash.json").write_text(json.dumps({**saved, "server": relay_url}))
        for args in (("keys", "list"), ("runs",)):
            result = hyperdash(home, *args)
            assert result.returncode == 0, result.stderr
    assert seen == [("/api/v1/users/api_keys", None, saved["access_token"]),
                    ("/api/v1/runs?limit=20&archived=no", None, saved["access_token"])]


def test_an_unknown_access_token_falls_back_to_the_api_key(account, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with recording_relay(account.server.url) as (relay_url, seen):
        (home / "hyperdash.json").write_text(json.dumps({
            "server": relay_url, "api_key": account.api_key, "access_token": "not-a-token-of-this-server",
        }))
        listed = hyperdash(home, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 2  # a header and the account's one key
    assert seen == [("/api/v1/users/api_keys", None, "not-a-token-of-this-server"),
                    ("/api/v1/users/api_keys", account.api_key, None)]


def test_a_throttled_login_says_how_long_to_wait(server_factory, tmp_path):
    server = server_factory()
    account = server.signup()
    answers = [hyperdash(tmp_path / "home", "login", "--server", server.url, "--email", account.email,
                         "--password-stdin", input="not the password\n") for _ in range(5)]
    assert all(a.returncode == 1 for a in answers)
    assert "wrong email or password" in answers[0].stderr.lower(), answers[0].stderr
    slowed = [a.stderr for a in answers if "slow down" in a.stderr]
    assert slowed, [a.stderr for a in answers]
    # the server's words, with its wait in seconds (a wait of a second said "in a minute" before)
    assert re.fullmatch(r"hyperdash: the server asks to slow down: too many wrong passwords; "
                        r"try again in \d+ s\n", slowed[0]), slowed[0]


def test_a_home_that_cannot_be_written_is_said_before_the_server_is_asked(server_factory, tmp_path):
    server = server_factory()
    account = server.signup()
    blocker = tmp_path / "a file"
    blocker.write_text("")
    home = blocker / "home"  # a folder that cannot be made: its parent is a file
    made = hyperdash(home, "signup", "--server", server.url, "--email", "later@example.com", "--password-stdin",
                     input="long enough password\n")
    assert made.returncode == 1 and "Traceback" not in made.stderr
    assert made.stderr == f"hyperdash: cannot read {home / 'hyperdash.json'}: Not a directory\n", made.stderr
    # no account was made that nobody holds a key to
    resp = requests.post(server.url + "/api/v1/sessions", json={"email": "later@example.com",
                                                               "password": "long enough password"}, timeout=10)
    assert resp.status_code == 401
    logged = hyperdash(home, "login", "--server", server.url, "--email", account.email, "--password-stdin",
                       input=account.password + "\n")
    assert logged.returncode == 1 and logged.stderr == made.stderr
    env = {**bare_env(home), "HYPERDASH_API_KEY": account.api_key, "HYPERDASH_SERVER": server.url}
    def key_names() -> list[str]:
        return [k["name"] for k in requests.get(server.url + "/api/v1/users/api_keys", timeout=10,
                                                headers={"x-hyperdash-auth": account.api_key}).json()["api_keys"]]

    before = key_names()
    key = subprocess.run([*HYPERDASH, "keys", "create", "--name", "unsaved", "--install"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert key.returncode == 1 and key.stderr == made.stderr
    assert key_names() == before  # no key made that could never be shown again


def test_settings_that_cannot_be_written_are_said_before_the_server_is_asked(server_factory, monkeypatch):
    from hyperdash import config
    from hyperdash.errors import ConfigError

    unwritable = Path("/sys")  # (sysfs: even root cannot make a file there)
    try:
        os.close(os.open(unwritable / "hyperdash-probe", os.O_CREAT | os.O_WRONLY, 0o600))
        pytest.skip("/sys can be written to here")
    except OSError:
        pass
    monkeypatch.setenv("HYPERDASH_HOME", str(unwritable))
    with pytest.raises(ConfigError, match=r"^cannot write /sys/hyperdash.json: "):
        config.check_settings_writable()
    server = server_factory()
    made = hyperdash(unwritable, "signup", "--server", server.url, "--email", "nowhere@example.com",
                     "--password-stdin", input="long enough password\n")
    assert made.returncode == 1 and made.stderr.startswith("hyperdash: cannot write /sys/hyperdash.json: ")
    resp = requests.post(server.url + "/api/v1/sessions", json={"email": "nowhere@example.com",
                                                               "password": "long enough password"}, timeout=10)
    assert resp.status_code == 401  # no account was made


def test_a_password_prompt_with_no_terminal_and_no_input_is_one_line_of_error(hyperdash_server, tmp_path):
    home = tmp_path / "home"
    for command in ("login", "signup"):
        result = subprocess.run([*HYPERDASH, command, "--server", hyperdash_server.url, "--email", "x@example.com"],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, env=bare_env(home),
                                timeout=60)
        assert result.returncode == 1
        assert result.stderr.splitlines()[-1] == ("hyperdash: no password came on standard input: type it at a "
                                                  "terminal, or pipe it with --password-stdin")
        assert "GetPassWarning" not in result.stderr and "Aborted" not in result.stderr
        assert not (home / "hyperdash.json").exists()
