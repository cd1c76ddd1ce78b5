"""A run deleted on the server while its spool still waits: the upload drops it for good (410
is final), says so, and sends nothing of it again."""

from __future__ import annotations

import subprocess

import requests
from test_spool_and_upload import write_run

from hyperdash.uploader import upload_pending
from tests.cli.cli_support import HYPERDASH


def test_an_upload_drops_the_spool_of_a_deleted_run(account, monkeypatch, hyperdash_home):
    monkeypatch.setenv("HYPERDASH_API_KEY", account.api_key)
    first = write_run(account.server.url, "deleted meanwhile", 5, ended=False)
    first.close()
    assert upload_pending().uploaded == [first.folder.name]
    run = account.wait_for_run("deleted meanwhile")["uuid"]
    resp = requests.delete(f"{account.server.url}/api/v1/runs/{run}", params={"force": "true"},
                           headers={"x-hyperdash-auth": account.api_key}, timeout=10)
    assert resp.status_code == 200, resp.text

    # The same run's later events wait in a spool, as after a crash.
    from hyperdash import framing
    from hyperdash.spool import Spool
    spool = Spool.create(run, {"uuid": run, "name": "deleted meanwhile", "api": "monitor",
                               "server": account.server.url})
    spool.append(framing.LINES, "stdout", 7, 2, 1000, b"late 1\nlate 2\n")
    spool.close()
    shown = subprocess.run([*HYPERDASH, "sync"], env=account.sdk_env(hyperdash_home), capture_output=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.decode() == f"Dropped run {run}: it was deleted on the server.\n"
    assert not spool.folder.exists()
    assert account.get(f"/api/v1/runs/{run}").status_code == 404  # not brought back
    summary = upload_pending()
    assert summary.uploaded == [] and summary.deleted == [] and summary.ok
