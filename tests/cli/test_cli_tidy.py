"""`hyperdash runs delete|archive|unarchive|share` against a real server, and a real job whose
run is deleted while it runs: the job goes on, says so once, and its run never comes back."""

from __future__ import annotations

import subprocess
import time

import requests
from cli_support import HYPERDASH, py


def test_delete_a_run_and_every_run_of_a_name(hd, account):
    for _ in range(2):
        assert hd("run", "-n", "tidy sweep", "true").returncode == 0
    assert hd("run", "-n", "tidy keep", "true").returncode == 0
    account.wait_for(lambda: len(account.runs(name="tidy sweep")) == 2 and account.runs(name="tidy keep"))
    keep = account.runs(name="tidy keep")[0]["uuid"]

    asked = hd("runs", "delete", keep[:8])  # no terminal to ask on, no --yes: nothing happens
    assert asked.returncode == 1 and b"add --yes" in asked.stderr
    assert account.run(keep)["uuid"] == keep

    done = hd("runs", "delete", keep[:8], "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == f"Deleted 1 run: {keep[:8]}\n"
    assert account.get(f"/api/v1/runs/{keep}").status_code == 404

    swept = hd("runs", "delete", "--name", "tidy sweep", "-y")
    assert swept.returncode == 0 and swept.stdout.startswith(b"Deleted 2 runs: ")
    assert account.runs(name="tidy sweep") == []
    again = hd("runs", "delete", "--name", "tidy sweep", "-y")
    assert again.returncode == 1 and b"no run named 'tidy sweep'" in again.stderr
    assert hd("runs", "delete", "-y").returncode == 2  # neither RUN nor --name
    missing = hd("runs", "delete", "no such run", "-y")
    assert missing.returncode == 1 and b"no run matches 'no such run'" in missing.stderr


def test_archive_and_unarchive(hd, account):
    assert hd("run", "-n", "tidy shelved", "true").returncode == 0
    run = account.wait_for_run("tidy shelved", "success")["uuid"]
    archived = hd("runs", "archive", run[:8])
    assert archived.returncode == 0 and b"Archived run" in archived.stdout, archived.stderr
    assert "tidy shelved" not in hd("runs").stdout.decode()
    assert "tidy shelved" in hd("runs", "--archived").stdout.decode()
    assert hd("runs", "unarchive", run[:8]).returncode == 0
    assert "tidy shelved" in hd("runs").stdout.decode()
    assert hd("runs", "--archived").stdout == b"No archived runs.\n"


def test_share_list_and_revoke(hd, account):
    assert hd("run", "-n", "tidy shared", *py("print('hello colleague')")).returncode == 0
    run = account.wait_for_run("tidy shared", "success")["uuid"]
    made = hd("runs", "share", run[:8])
    assert made.returncode == 0, made.stderr
    url = made.stdout.decode().strip()
    assert url.startswith(account.server.url + "/shared/") and b"--revoke" in made.stderr
    page = requests.get(url, timeout=10)  # no account at all
    assert page.status_code == 200 and "hello colleague" in page.text
    listed = hd("runs", "share", run[:8], "--list").stdout.decode().split()
    share_id = listed[0]
    assert hd("runs", "share", run[:8], "--revoke", share_id).returncode == 0
    assert requests.get(url, timeout=10).status_code == 404
    assert hd("runs", "share", run[:8], "--list").stdout == b"No live links.\n"


def test_a_run_deleted_while_it_runs_is_dropped_by_the_job_and_never_comes_back(hd, account, hyperdash_home):
    # A job that prints for a few seconds, and says at the end that it got to its end.
    code = ("import time\n"
            "for i in range(60):\n"
            "    print('line', i, flush=True); time.sleep(0.1)\n"
            "print('the job finished')\n")
    job = subprocess.Popen([*HYPERDASH, "run", "-n", "tidy deleted live", *py(code)],
                           env=account.sdk_env(hyperdash_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        run = account.wait_for_run("tidy deleted live", "running")["uuid"]
        account.wait_for(lambda: len(account.logs(run)) >= 3)

        refused = hd("runs", "delete", run, "--yes")
        assert refused.returncode == 1 and b"add --force" in refused.stderr
        assert account.run(run)["status"] == "running"
        forced = hd("runs", "delete", run, "--yes", "--force")
        assert forced.returncode == 0, forced.stderr

        out, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0
    assert out.decode().splitlines()[-1] == "the job finished"  # the job never noticed
    said = [line for line in err.decode().splitlines() if "deleted on the server" in line]
    assert len(said) == 1, err.decode()  # said once
    assert "events are dropped" in said[0]
    time.sleep(1.0)  # (anything still in flight would have landed by now)
    assert account.get(f"/api/v1/runs/{run}").status_code == 404
    assert all(r["uuid"] != run for r in account.runs(limit=100))
    spools = hyperdash_home / "spool"
    assert not spools.exists() or not any(spools.iterdir())  # nothing left to upload later
    assert hd("sync").stdout == b"Nothing to upload.\n"


def test_the_server_keep_days_option_removes_old_runs(server_factory, hyperdash_home):
    import sqlite3

    from hyperdash import events

    server = server_factory("--keep-days", "3")
    account = server.signup()
    env = account.sdk_env(hyperdash_home)
    for name in ("old one", "new one"):
        assert subprocess.run([*HYPERDASH, "run", "-n", name, "true"], env=env, timeout=60).returncode == 0
    old = account.wait_for_run("old one", "success")["uuid"]
    account.wait_for_run("new one", "success")
    four_days_ago = events.now_ms() - 4 * 86_400_000
    with sqlite3.connect(server.db_url.removeprefix("sqlite:///")) as db:  # its end, set in the database
        db.execute("UPDATE runs SET ended_at = ?, last_seen_at = ? WHERE uuid = ?", (four_days_ago, four_days_ago, old))
    account.wait_for(lambda: account.get(f"/api/v1/runs/{old}").status_code == 404)
    assert [r["name"] for r in account.runs()] == ["new one"]
    assert account.get("/api/v1/users/settings").json()["server_keep_days"] == 3

    refused = subprocess.run([*HYPERDASH, "server", "--keep-days", "0"], env=env, capture_output=True, timeout=60)
    assert refused.returncode == 2 and b"--keep-days" in refused.stderr


def test_a_quiet_job_learns_of_the_delete_from_its_heartbeat(hd, account, hyperdash_home):
    # One line, then silence (only heartbeats go) while the run is deleted, then its end.
    code = "import time; print('hello', flush=True); time.sleep(9); print('bye')"
    job = subprocess.Popen([*HYPERDASH, "run", "-n", "tidy quiet", *py(code)],
                           env=account.sdk_env(hyperdash_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        run = account.wait_for_run("tidy quiet", "running")["uuid"]
        account.wait_for(lambda: account.logs(run))
        assert hd("runs", "delete", run, "-y", "--force").returncode == 0
        out, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0 and out.decode().splitlines() == ["hello", "bye"]
    assert err.decode().count("deleted on the server") == 1, err.decode()
    assert account.get(f"/api/v1/runs/{run}").status_code == 404  # its end did not bring it back
