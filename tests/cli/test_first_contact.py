"""The first hour: where to watch a run, short run ids that open it, and the mistakes a newcomer
makes (a short password, a refused key, an ambiguous id, a shell command line in one argument)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import uuid

import requests
from cli_support import HYPERDASH, bare_env, py, signed_in

from hyperdash import events as ev

FOLLOW = re.compile(r"^hyperdash: follow this run at (http://127\.0\.0\.1:\d+/runs/([0-9a-f]{8}))$")


def follow_lines(stderr: bytes) -> list[re.Match]:
    """The lines that say where to follow a run, parsed."""
    return [m for m in map(FOLLOW.match, stderr.decode().splitlines()) if m]


def assert_opens_the_run(account, url: str, run_uuid: str, name: str) -> None:
    """``url`` opens the run's page in a signed-in browser session, at the run's own address."""
    page = signed_in(account).get(url, timeout=10)
    assert page.status_code == 200, page.text[:500]
    assert page.url == f"{account.server.url}/runs/{run_uuid}"
    assert name in page.text
    short = url.rsplit("/", 1)[1]
    api = account.get(f"/api/v1/runs/{short}")  # the API takes the short id as well
    assert api.status_code == 200 and api.json()["uuid"] == run_uuid


def start_run(account, run_uuid: str, name: str) -> None:
    """A run with a uuid of our choosing, sent as the original clients send one."""
    envelope = ev.envelope(ev.RUN_STARTED, run_uuid, {"job_name": name})
    resp = requests.post(account.server.url + ev.INGEST_PATH, json=envelope, timeout=10,
                         headers={ev.AUTH_HEADER: account.api_key})
    assert resp.status_code == 200, resp.text


# --- where to follow a run ----------------------------------------------------------------------


def test_hyperdash_run_says_where_to_follow_the_run_and_that_address_opens_it(hd, account):
    result = hd("run", "-n", "first contact", *py("print('hello')"))

    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello\n"  # the job's own output, untouched
    [line] = follow_lines(result.stderr)
    assert result.stderr.decode().splitlines()[0] == line.group(0), "said first, as the run starts"
    run = account.wait_for_run("first contact", "success")
    url, short = line.groups()
    assert url.startswith(account.server.url + "/runs/") and run["uuid"].startswith(short)
    assert_opens_the_run(account, url, run["uuid"], "first contact")
    # Said to the person, not recorded as the job's output.
    assert not any("follow this run" in line["text"] for line in account.logs(run["uuid"]))


def test_experiment_and_monitor_say_it_once_per_run(account, hyperdash_home, tmp_path):
    job = tmp_path / "job.py"
    job.write_text(textwrap.dedent("""\
        from hyperdash import Experiment, monitor

        exp = Experiment("contact experiment")
        print("in the experiment")
        exp.log("a line")
        exp.end()
        exp.end()

        @monitor("contact monitor")
        def train():
            print("in the function")

        train()
    """))
    result = subprocess.run([sys.executable, str(job)], capture_output=True, timeout=60,
                            env=account.sdk_env(hyperdash_home))

    assert result.returncode == 0, result.stderr
    assert result.stdout == b"in the experiment\na line\nin the function\n"
    experiment_line, monitor_line = follow_lines(result.stderr)
    assert result.stderr.decode().count("follow this run at") == 2
    experiment = account.wait_for_run("contact experiment", "success")
    monitored = account.wait_for_run("contact monitor", "success")
    assert experiment["uuid"].startswith(experiment_line.group(2))
    assert monitored["uuid"].startswith(monitor_line.group(2))
    assert_opens_the_run(account, experiment_line.group(1), experiment["uuid"], "contact experiment")


def test_hyperdash_open_opens_the_run_in_a_browser_or_prints_its_address(account, hyperdash_home, tmp_path):
    assert subprocess.run([*HYPERDASH, "run", "-n", "to open", "true"], env=account.sdk_env(hyperdash_home),
                          capture_output=True, timeout=60).returncode == 0
    run = account.wait_for_run("to open", "success")
    # The browser of a machine with a display: whatever $BROWSER names (here, a script that
    # notes the address it was asked to open).
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {opened}\n')
    browser.chmod(0o755)
    env = account.sdk_env(hyperdash_home)
    env["BROWSER"] = str(browser)

    result = subprocess.run([*HYPERDASH, "open", run["uuid"][:8]], env=env, capture_output=True, timeout=60)

    assert result.returncode == 0, result.stderr
    url = f"{account.server.url}/runs/{run['uuid']}"
    assert opened.read_text() == url
    assert result.stdout == b""
    assert_opens_the_run(account, url, run["uuid"], "to open")

    # No browser at all (no display, no terminal browser): the address, to copy.
    for var in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY", "TERM"):
        env.pop(var, None)
    headless = subprocess.run([*HYPERDASH, "open", "to open"], env=env, capture_output=True, timeout=60)
    assert headless.returncode == 0, headless.stderr
    assert headless.stdout.decode() == url + "\n"


# --- run ids that several runs share ------------------------------------------------------------


def test_the_start_of_an_id_that_several_runs_share_is_refused_with_the_candidates(hd, account, hyperdash_server):
    first, second = "77770000-aaaa-4aaa-8aaa-100000000000", "77770000-aaaa-4aaa-8aaa-200000000000"
    start_run(account, first, "twin one")
    start_run(account, second, "twin two")
    # Another account's run with the same start is none of this account's business.
    start_run(hyperdash_server.signup(), "77770000-aaaa-4aaa-8aaa-300000000000", "someone else's")

    api = account.get("/api/v1/runs/77770000")
    assert api.status_code == 409
    assert api.json()["code"] == "ambiguous_run"
    assert {c["uuid"] for c in api.json()["candidates"]} == {first, second}
    page = signed_in(account).get(account.server.url + "/runs/77770000", timeout=10)
    assert page.status_code == 409 and first in page.text and second in page.text
    assert "someone else" not in page.text

    for ref in ("7777", "77770000"):  # shorter than the server resolves, and as long
        logs = hd("logs", ref)
        assert logs.returncode == 1
        [message] = logs.stderr.decode().splitlines()
        assert message.startswith(f"hyperdash: '{ref}' is the start of the ids of 2 runs: ")
        assert f"{first} (twin one)" in message and f"{second} (twin two)" in message

    # Enough of the id to tell them apart names one, on every path.
    unique = first[:25]
    assert account.get(f"/api/v1/runs/{unique}").json()["uuid"] == first
    assert signed_in(account).get(f"{account.server.url}/runs/{unique}", timeout=10).url.endswith(first)
    assert hd("logs", unique).returncode == 0
    assert account.get("/api/v1/runs/77770001").status_code == 404


# --- newcomers' mistakes ------------------------------------------------------------------------


def test_signup_checks_the_password_rule_at_the_first_prompt(hyperdash_server, tmp_path):
    home = tmp_path / "home"
    email = f"short-{uuid.uuid4().hex[:10]}@example.com"
    good = "long enough now"
    result = subprocess.run(
        [*HYPERDASH, "signup", "--server", hyperdash_server.url, "--email", email],
        input=f"short\n{good}\n{good}\n", capture_output=True, text=True, env=bare_env(home), timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("the password must have 8 characters or more") == 1
    # Refused before the confirmation prompt: that prompt comes once, for the good password.
    assert result.stderr.count("Repeat for confirmation") == 1
    assert result.stderr.index("8 characters") < result.stderr.index("Repeat for confirmation")
    key = json.loads((home / "hyperdash.json").read_text())["api_key"]
    assert requests.get(hyperdash_server.url + "/api/v1/me", headers={ev.AUTH_HEADER: key}, timeout=10).ok


def revoked_key(account) -> str:
    made = requests.post(account.server.url + "/api/v1/users/api_keys", json={"name": "old"}, timeout=10,
                         headers={ev.AUTH_HEADER: account.api_key})
    assert made.status_code == 201, made.text
    gone = requests.delete(f"{account.server.url}/api/v1/users/api_keys/{made.json()['id']}", timeout=10,
                           headers={ev.AUTH_HEADER: account.api_key})
    assert gone.status_code == 200, gone.text
    return made.json()["api_key"]


def test_a_refused_key_is_named_by_where_it_came_from_and_why(account, hyperdash_home, tmp_path):
    old = revoked_key(account)
    env = account.sdk_env(hyperdash_home)
    env["HYPERDASH_API_KEY"] = old
    # A job tries the key again after a second, so it ends soon once the server refused it twice.
    job_env = {"HYPERDASH_EXIT_TIMEOUT": "20", "HYPERDASH_KEY_REFRESH_SECONDS": "1"}

    # The server says why, beside the code the original clients know.
    refused = requests.get(account.server.url + "/api/v1/runs", headers={ev.AUTH_HEADER: old}, timeout=10)
    assert refused.status_code == 401
    assert refused.json()["code"] == "api_key_requred" and refused.json()["reason"] == "revoked"

    runs = subprocess.run([*HYPERDASH, "runs"], env=env, capture_output=True, text=True, timeout=60)
    assert runs.returncode == 1
    assert runs.stderr.splitlines() == [
        "hyperdash: the server refused the API key (401: it was revoked); it came from the environment "
        "variable HYPERDASH_API_KEY: set HYPERDASH_API_KEY to a live key, or unset it and run "
        "`hyperdash login` (or `hyperdash signup`) to get a new API key"
    ]

    job = subprocess.run([*HYPERDASH, "run", "-n", "old key", *py("print('still runs')")],
                         env={**env, **job_env}, capture_output=True, timeout=60)
    assert job.returncode == 0 and job.stdout == b"still runs\n"
    assert job.stderr.decode().count(
        "hyperdash: the server refused the API key (401: it was revoked); it came from the environment "
        "variable HYPERDASH_API_KEY; events wait in the spool until a valid API key is found\n") == 1, job.stderr

    # A key in a hyperdash.json that this server never made: the file is named.
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "hyperdash.json").write_text(json.dumps({"api_key": "hd_not_a_key_of_this_server"}))
    del env["HYPERDASH_API_KEY"]
    unknown = subprocess.run([*HYPERDASH, "runs"], env=env, cwd=workdir, capture_output=True, text=True,
                             timeout=60)
    assert unknown.returncode == 1
    assert unknown.stderr.splitlines() == [
        "hyperdash: the server refused the API key (401: no account on this server has it); it came from "
        f"{workdir / 'hyperdash.json'}: put a live key there, or remove that one and run `hyperdash login` "
        "(or `hyperdash signup`) to get a new API key"
    ]
    # From the api_key_getter of a job, the getter is named.
    job = tmp_path / "getter.py"
    job.write_text(textwrap.dedent(f"""\
        from hyperdash import Experiment

        with Experiment("getter key", api_key_getter=lambda: {old!r}):
            print("still runs")
    """))
    by_getter = subprocess.run([sys.executable, str(job)], env={**env, **job_env}, capture_output=True,
                               timeout=60)
    assert by_getter.returncode == 0 and by_getter.stdout == b"still runs\n"
    assert "(401: it was revoked); it came from the api_key_getter;" in by_getter.stderr.decode()


def test_a_shell_command_line_in_one_argument_gets_a_hint(hd):
    result = hd("run", "-n", "x", "echo hi && echo there")

    assert result.returncode == 127
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        "hyperdash: command not found: echo hi && echo there "
        "(to run a shell command line, give it to a shell: sh -c 'echo hi && echo there')"
    ]
    # Given to a shell as the hint says, it runs.
    fixed = hd("run", "-n", "x", "sh", "-c", "echo hi && echo there")
    assert fixed.returncode == 0 and fixed.stdout == b"hi\nthere\n"


def test_pipe_exits_0_whatever_the_piped_command_did_unless_the_shell_says_otherwise(account, hyperdash_home):
    """As the README says: a pipeline's status is its last command's, unless pipefail."""
    env = account.sdk_env(hyperdash_home)
    pipe = f"{sys.executable} -m hyperdash pipe -n piped"
    plain = subprocess.run(["bash", "-c", f"(echo out; exit 3) | {pipe}"], env=env, capture_output=True,
                           timeout=60)
    assert plain.returncode == 0 and plain.stdout == b"out\n"
    strict = subprocess.run(["bash", "-c", f"set -o pipefail; (echo out; exit 3) | {pipe}"], env=env,
                            capture_output=True, timeout=60)
    assert strict.returncode == 3 and strict.stdout == b"out\n"
