"""``hyperdash demo``: with no server it brings its own; with one it reports there."""

from __future__ import annotations

import json
import signal
import subprocess

import requests
from cli_support import HYPERDASH, bare_env

DEMO_RUN = "demo: tiny classifier"


def test_demo_starts_a_local_server_and_serves_until_ctrl_c(server_factory, tmp_path):
    url = server_factory(start=False).url  # a free loopback port: nothing answers there yet
    home = tmp_path / "home"
    env = bare_env(home)
    env["HYPERDASH_SERVER"] = url
    env["PYTHONFAULTHANDLER"] = "1"  # a SIGABRT makes it print where each of its threads is
    demo = subprocess.Popen([*HYPERDASH, "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env, text=True)
    try:
        shown = []
        for line in demo.stdout:
            shown.append(line)
            if line.startswith("Serving until Ctrl-C"):
                break
        output = "".join(shown)
        assert f"Dashboard: {url}\n" in output, output
        assert f"Sign in with this one-time link: {url}/auth/token?token=" in output
        assert "epoch  30/30" in output
        # Where to watch it comes before the job, which is there to be watched live.
        assert output.index("Dashboard:") < output.index("Sign in with") < output.index("epoch   1/30")

        # Local mode wrote the local account's key; the demo run is there, whole, with its data.
        key = json.loads((home / "hyperdash.json").read_text())["api_key"]
        headers = {"x-hyperdash-auth": key}
        runs = requests.get(f"{url}/api/v1/runs", headers=headers, timeout=10).json()["runs"]
        assert [(r["name"], r["status"]) for r in runs] == [(DEMO_RUN, "success")]
        detail = requests.get(f"{url}/api/v1/runs/{runs[0]['uuid']}", headers=headers, timeout=10).json()
        assert detail["params"] == {"learning_rate": 0.05, "batch_size": 64, "optimizer": "sgd"}
        assert set(detail["metrics"]) == {"loss", "accuracy"}
        lines = requests.get(f"{url}/api/v1/runs/{runs[0]['uuid']}/logs", headers=headers, timeout=10).json()["lines"]
        assert sum(line["text"].startswith("epoch ") for line in lines) == 30
        assert requests.get(url + "/", timeout=10).status_code == 200  # the dashboard is served

        demo.send_signal(signal.SIGINT)
        try:
            rest, _ = demo.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            demo.send_signal(signal.SIGABRT)
            _, stacks = demo.communicate(timeout=10)
            raise AssertionError(f"the demo did not stop within 30 s of Ctrl-C; its threads:\n{stacks}") from None
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 0
    assert rest.rstrip().endswith("Server stopped.")


def test_demo_reports_to_a_server_that_answers(account, hyperdash_home):
    result = subprocess.run([*HYPERDASH, "demo"], capture_output=True, text=True,
                            env=account.sdk_env(hyperdash_home), timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"Open the dashboard at {account.server.url}" in result.stdout
    assert result.stdout.index("Open the dashboard at") < result.stdout.index("epoch   1/30")
    run = account.wait_for_run(DEMO_RUN, "success")
    assert run["api"] == "experiment"


def test_demo_with_a_server_but_no_key_says_how_to_get_one(hyperdash_server, tmp_path):
    env = bare_env(tmp_path / "home")
    env["HYPERDASH_SERVER"] = hyperdash_server.url
    result = subprocess.run([*HYPERDASH, "demo"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        f"hyperdash: a server answers at {hyperdash_server.url}, but no API key is configured: "
        "run `hyperdash login` (or `hyperdash signup`)\n"
    )


def test_demo_will_not_start_a_second_server_on_a_store_one_serves(server_factory, tmp_path):
    # Its own server on the store another server serves, on another port, would lose lines.
    home = tmp_path / "home"
    running = server_factory(start=False)
    running.db_url = f"sqlite:///{home / 'hyperdash.db'}"
    running.start()
    env = bare_env(home)
    env["HYPERDASH_SERVER"] = server_factory(start=False).url  # nothing answers there
    done = subprocess.run([*HYPERDASH, "demo"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=env)
    assert done.returncode == 1
    assert f"another server (pid {running.proc.pid}) serves {home / 'hyperdash.db'} already" in done.stderr
    assert requests.get(running.url + "/api/v1/health", timeout=10).json()["ok"] is True
