"""The spool on disk, the transport against the real server, and uploading orphaned spools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from sdk_support import texts

from hyperdash import errors, framing
from hyperdash import spool as spool_module
from hyperdash.events import APIS
from hyperdash.shipper import SpoolSender
from hyperdash.spool import EVENT, Spool, orphaned_spools, spool_root
from hyperdash.transport import Transport
from hyperdash.uploader import upload_pending
from tests.conftest import free_port


def event(type_: str, payload: dict) -> bytes:
    return json.dumps({"type": type_, "payload": payload}).encode()


def write_run(server_url: str, name: str, lines: int, ended: bool = True) -> Spool:
    """A spool as a run leaves it: run_started, ``lines`` lines in records of 10, run_ended."""
    run_uuid = str(uuid.uuid4())
    spool = Spool.create(run_uuid, {"uuid": run_uuid, "name": name, "api": "monitor", "server": server_url})
    spool.append(EVENT, None, 1, 1, 1000, event("run_started", {"job_name": name}))
    seq = 2
    for start in range(0, lines, 10):
        block = b"".join(f"line {i}\n".encode() for i in range(start, min(lines, start + 10)))
        count = block.count(b"\n")
        spool.append(framing.LINES, "stdout", seq, count, 1000, block)
        seq += count
    if ended:
        spool.append(EVENT, None, seq, 1, 1000, event("run_ended", {"final_status": "success"}))
    return spool


def test_records_round_trip_and_the_cursor_persists(tmp_path):
    spool = write_run("http://x", "r", 25)
    records = list(spool.records(0))
    assert [(r.kind, r.first_seq, r.event_count) for r in records] == [
        (EVENT, 1, 1), (framing.LINES, 2, 10), (framing.LINES, 12, 10), (framing.LINES, 22, 5), (EVENT, 27, 1)]
    assert records[2].stream == "stdout" and records[2].blob.startswith(b"line 10\n")
    spool.save_cursor(records[2].offset, 15)
    folder = spool.folder
    spool.close()
    again = Spool.open_orphan(folder)
    assert (again.cursor_offset, again.acked_seq) == (records[2].offset, 15)
    again.close()


@pytest.mark.parametrize("seqs, expected", [
    ("in order", [29, 28, 14, 3, 0]), ("a gap", [29, 28, 14, 3, 0]), ("a repeat", [29, 28, 14, 0, 0])])
def test_the_owner_counts_unsent_events_as_reading_the_records_back_does(seqs, expected):
    """The run that owns a spool counts its unsent events without reading the records back;
    whoever opens it after the run counts them by reading: the two agree, whatever the seqs."""
    spool = write_run("http://x", "r", 25, ended=False)  # seqs 1 to 26, in records of 1, 10, 10, 5
    spool.append(EVENT, None, {"in order": 27, "a gap": 40, "a repeat": 20}[seqs], 3, 1000,
                 event("param", {"params": {"a": 1}}))
    spool.append(framing.LINES, "stdout", 0, 0, 1000, b"")  # (a record that numbers nothing)
    records = list(spool.records(0))
    cursors = [(0, 0), (records[1].offset, 1), (records[2].offset, 15), (records[4].offset, 26),
               (records[5].offset, 42)]
    counted = []
    for offset, acked in cursors:
        spool.cursor_offset, spool.acked_seq = offset, acked
        counted.append(spool.unsent())
    assert counted == [(n, 0) for n in expected]
    folder = spool.folder
    spool.save_cursor(*cursors[2])
    spool.close()
    read_back = Spool.open_orphan(folder)
    assert read_back.unsent() == (expected[2], 0)
    read_back.close()


def test_a_live_spool_is_not_an_orphan_and_a_torn_record_is_ignored():
    spool = write_run("http://x", "r", 3)
    assert Spool.open_orphan(spool.folder) is None and orphaned_spools() == []
    end = spool.end_offset
    with open(spool.folder / "events", "ab") as f:
        f.write(b"\x01\x01\x02")  # a record cut short by a crash
    spool.close()
    assert orphaned_spools() == [spool.folder]
    orphan = Spool.open_orphan(spool.folder)
    assert list(orphan.records(0))[-1].end == end
    orphan.close()


def test_disk_failure_continues_in_bounded_memory():
    spool = write_run("http://x", "r", 10, ended=False)
    failures = []
    spool.on_disk_error = failures.append
    os.close(spool._events_fd)
    spool._events_fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
    spool.memory_limit = 1000
    seq = 12
    for i in range(100):
        spool.append(framing.LINES, "stderr", seq, 1, 1, b"%03d " % i + b"x" * 40 + b"\n")
        seq += 1
    assert len(failures) == 1 and not spool.on_disk
    records = list(spool.records(0, max_bytes=1 << 30))
    assert records[1].first_seq == 2  # the disk part is still there
    assert spool.dropped_events > 0 and len(spool._memory) <= 1000
    assert records[-1].blob.startswith(b"099 ")  # the newest are kept
    spool.close()


def test_records_written_at_once_stay_whole_where_the_disk_fills_partway_through_them():
    """Several records go to disk in one write. Where the disk fills partway through it (here a
    file-size limit, in a process of its own), the records it took whole stay on disk, the torn
    one and those after it go on in memory: each record once, in order."""
    code = """if True:
        import json, resource
        from hyperdash import framing
        from hyperdash.spool import _HEADER, Spool

        spool = Spool.create("5d1c1d5e-1f0e-4a39-9d4e-0a6f1c2b3d4e", {"name": "r", "server": "http://x"})
        spool.append(framing.LINES, "stdout", 1, 1, 1000, b"first\\n")
        blobs = [b"%d" % i + b"x" * 98 + b"\\n" for i in range(4)]  # 100 bytes each
        room = spool.end_offset + 2 * (_HEADER.size + 100) + 30  # two of them whole, then 30 bytes
        resource.setrlimit(resource.RLIMIT_FSIZE, (room, resource.RLIM_INFINITY))
        failures = []
        spool.on_disk_error = failures.append
        spool.append_all([(framing.LINES, "stdout", 2 + i, 1, 1000, blob) for i, blob in enumerate(blobs)])
        print(json.dumps({
            "failures": [type(exc).__name__ for exc in failures], "room": room, "disk_end": spool._disk_end,
            "file": (spool.folder / "events").stat().st_size,
            "records": [[r.first_seq, r.offset < spool._disk_end, r.blob[:1].decode()]
                        for r in spool.records(0, max_bytes=1 << 30)]}))
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(done.stdout)
    assert seen["failures"] == ["OSError"]  # (EFBIG: said once)
    assert seen["records"] == [[1, True, "f"], [2, True, "0"], [3, True, "1"], [4, False, "2"], [5, False, "3"]]
    # the torn 30 bytes stay in the file, and the records from there on come from memory
    assert seen["file"] == seen["room"] and seen["disk_end"] == seen["room"] - 30


def test_transport_against_the_real_server(account):
    transport = Transport(account.server.url, api_key=account.api_key)
    run_uuid = str(uuid.uuid4())
    batch = [{"type": "run_started", "timestamp": 1, "sdk_run_uuid": run_uuid, "seq": 1,
              "payload": {"job_name": "t"}},
             {"type": "log", "timestamp": 1, "sdk_run_uuid": run_uuid, "seq": 2,
              "payload": {"level": "INFO", "body": "hi", "stream": "stdout"}}]
    flags = {"log_blocks": True, "attached_text": True}
    assert transport.send_events(batch, "monitor") == {"stored": 2, "duplicates": 0, **flags}
    assert transport.send_events(batch, "monitor") == {"stored": 0, "duplicates": 2, **flags}
    assert transport.request("GET", f"/api/v1/runs/{run_uuid}")["name"] == "t"
    with pytest.raises(errors.APIError) as refused:
        transport.send_events([dict(batch[0], type="bogus", seq=3)], "monitor")
    assert refused.value.status == 400 and refused.value.message
    with pytest.raises(errors.AuthenticationError) as denied:
        Transport(account.server.url, api_key="wrong").send_events(batch, "monitor")
    assert denied.value.code == "api_key_requred"
    with pytest.raises(errors.AuthenticationError):
        Transport(account.server.url).send_events(batch, "monitor")
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(errors.ServerUnreachable) as down:
        Transport(dead, api_key="k").send_events(batch, "monitor")
    assert down.value.url == dead
    transport.close()


def test_sender_drops_only_the_event_the_server_refuses(account):
    spool = write_run(account.server.url, "one bad", 5, ended=False)
    spool.append(EVENT, None, 7, 1, 1000, event("no_such_type", {}))
    spool.append(EVENT, None, 8, 1, 1000, event("run_ended", {"final_status": "success"}))
    dropped = []
    sender = SpoolSender(spool, Transport(account.server.url, api_key=account.api_key), spool.folder.name,
                         "monitor", on_dropped=dropped.append)
    assert sender.send_batch() == 8 and not sender.pending()
    assert len(dropped) == 1 and dropped[0].status == 400
    run = account.wait_for_run("one bad", status="success")
    assert texts(account.logs(run["uuid"])) == [f"line {i}" for i in range(5)]
    spool.close()


def test_sender_resumes_inside_a_record_after_a_small_batch(account):
    spool = write_run(account.server.url, "small batches", 25)
    sender = SpoolSender(spool, Transport(account.server.url, api_key=account.api_key), spool.folder.name,
                         "monitor", batch_events=4)
    sent = []
    while sender.pending():
        sent.append(sender.send_batch())
    assert sum(sent) == 27 and max(sent) == 4
    run = account.wait_for_run("small batches", status="success")
    assert texts(account.logs(run["uuid"])) == [f"line {i}" for i in range(25)]
    spool.close()


def test_upload_pending_is_idempotent_and_reports_what_it_could_not_do(account, monkeypatch):
    monkeypatch.setenv("HYPERDASH_API_KEY", account.api_key)
    done = write_run(account.server.url, "orphan", 30)
    done.close()
    unreachable = write_run(f"http://127.0.0.1:{free_port()}", "unreachable", 3)
    unreachable.close()
    live = write_run(account.server.url, "alive", 3)  # its owner (this test) holds the lock
    progress = []
    summary = upload_pending(on_progress=lambda *args: progress.append(args))
    assert summary.uploaded == [done.folder.name] and summary.events_sent == 32
    assert summary.busy == [live.folder.name]
    assert "cannot reach" in summary.failed[unreachable.folder.name]
    assert progress[-1] == (done.folder.name, 32, 32)
    assert not done.folder.exists() and unreachable.folder.exists()
    again = upload_pending()
    assert again.uploaded == [] and again.events_sent == 0
    run = account.wait_for_run("orphan", status="success")
    assert texts(account.logs(run["uuid"])) == [f"line {i}" for i in range(30)]
    live.close()


def test_detached_uploader_command(account, hyperdash_home):
    spool = write_run(account.server.url, "detached", 7)
    spool.close()
    env = account.sdk_env(hyperdash_home)
    done = subprocess.run([sys.executable, "-m", "hyperdash.uploader", "--run", spool.folder.name],
                          env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "uploaded 1 runs, 9 events" in done.stdout.decode()
    assert not spool.folder.exists() and spool_root().exists()
    missing = subprocess.run([sys.executable, "-m", "hyperdash.uploader", "--run", str(uuid.uuid4())],
                             env=env, capture_output=True, timeout=60)
    assert missing.returncode == 1 and b"no spool for this run" in missing.stdout


@pytest.mark.parametrize("safe_path", [False, True], ids=["", "PYTHONSAFEPATH"])
def test_a_detached_uploader_imports_nothing_from_the_folder_it_starts_in(account, hyperdash_home, tmp_path,
                                                                         safe_path):
    spool = write_run(account.server.url, "crowded folder", 7)
    spool.close()
    # A job in a folder holding a module named as one the uploader imports (and the job does
    # not), with hyperdash found as the job finds it, not from this test's own path.
    (tmp_path / "argparse.py").write_text("raise SystemExit('the folder shadowed argparse')\n")
    env = account.sdk_env(hyperdash_home)
    env.pop("PYTHONPATH", None)
    if safe_path:  # (the interpreter then puts no current folder first: nothing else is taken off)
        env["PYTHONSAFEPATH"] = "1"
    job = ("import os, sys\n"
           "from hyperdash.uploader import spawn_detached\n"
           f"pid = spawn_detached({spool.folder.name!r})\n"
           "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n")
    done = subprocess.run([sys.executable, "-c", job], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    log = (hyperdash_home / "logs" / "uploader.log").read_text()
    assert done.returncode == 0, (done.stderr, log)
    assert "uploaded 1 runs, 9 events" in log and "s of CPU" in log
    run = account.wait_for_run("crowded folder", status="success")
    assert texts(account.logs(run["uuid"])) == [f"line {i}" for i in range(7)]


def test_a_detached_uploader_collects_garbage_but_not_among_its_imports():
    """The uploader's bootstrap imports with the collector off, then freezes what the imports
    made and turns the collector on: its work's garbage is collected, its modules never scanned.
    It imports nothing it does not use: no argument parser (its options come as JSON), no
    random numbers until a failure needs them, no IDNA codec for its server's ASCII name."""
    from hyperdash.uploader import _BOOTSTRAP

    # the bootstrap as it is, up to the call that would upload, which reports instead
    probe = _BOOTSTRAP.replace(
        "sys.exit(_run_uploader(**json.loads(sys.argv[1])))",
        "print(gc.isenabled(), gc.get_freeze_count() > 1000, json.loads(sys.argv[1])); "
        "from hyperdash.transport import _Connection; import socket; server = socket.create_server(('127.0.0.1', 0)); "
        "_Connection('localhost', server.getsockname()[1], 5, 5).close(); "
        "print(*[name in sys.modules for name in ('argparse', 'random', 'encodings.idna')])")
    assert probe != _BOOTSTRAP
    options = json.dumps({"run": "a run", "lock_fd": None})
    done = subprocess.run([sys.executable, "-S", "-c", probe, json.dumps(sys.path), options], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.splitlines() == ["True True {'run': 'a run', 'lock_fd': None}", "False False False"], \
        done.stderr


def test_every_api_name_is_accepted_by_run():
    from hyperdash.run import Run

    for api in APIS:
        assert Run("x", api=api).api == api
    with pytest.raises(ValueError, match="api must be one of"):
        Run("x", api="carrier pigeon")


def test_a_spool_torn_by_a_crash_uploads_what_is_whole(account, monkeypatch):
    monkeypatch.setenv("HYPERDASH_API_KEY", account.api_key)
    spool = write_run(account.server.url, "torn", 12, ended=False)
    with open(spool.folder / "events", "ab") as f:
        f.write(b"\x01\x01\x02\x03")  # the process died in the middle of a write
    spool.close()
    summary = upload_pending()
    assert summary.uploaded == [spool.folder.name] and summary.events_sent == 13
    run = account.wait_for_run("torn")
    assert run["status"] == "running" and texts(account.logs(run["uuid"])) == [f"line {i}" for i in range(12)]


def test_a_detached_uploader_started_with_sigterm_blocked_still_dies_on_sigterm(account, hyperdash_home):
    import signal
    import threading
    import time

    from hyperdash.uploader import spawn_detached

    # A live run's spool: the uploader waits for its owner (this process) to let go of it.
    live = write_run(account.server.url, "still running", 3, ended=False)
    started = []

    def spawn_with_sigterm_blocked():
        # as from a run's shipper thread under `hyperdash run`, which blocks signals
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        started.append(spawn_detached(live.folder.name))

    spawner = threading.Thread(target=spawn_with_sigterm_blocked)
    spawner.start()
    spawner.join()
    [uploader] = started

    def status(block: bool):
        pid, code = os.waitpid(uploader, 0 if block else os.WNOHANG)
        return os.waitstatus_to_exitcode(code) if pid else None

    log = hyperdash_home / "logs" / "uploader.log"
    try:
        deadline = time.monotonic() + 30
        while not (log.exists() and "waiting for the process of run" in log.read_text()):
            assert time.monotonic() < deadline and status(block=False) is None, "the uploader should wait"
            time.sleep(0.02)
        os.kill(uploader, signal.SIGTERM)
        assert status(block=True) == -signal.SIGTERM
    finally:
        try:
            os.kill(uploader, signal.SIGKILL)
            os.waitpid(uploader, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        live.close()


def test_the_cursor_is_written_at_most_once_a_second_and_on_close():
    spool = write_run("http://x", "r", 25)
    records = list(spool.records(0))
    spool.save_cursor(records[1].offset, 1)
    spool.save_cursor(records[2].offset, 11)  # within the second: kept in memory
    assert (spool.folder / "cursor").read_text().split()[:2] == [str(records[1].offset), "1"]
    assert (spool.cursor_offset, spool.acked_seq) == (records[2].offset, 11)
    folder = spool.folder
    spool.close()
    again = Spool.open_orphan(folder)
    assert (again.cursor_offset, again.acked_seq) == (records[2].offset, 11)
    again.close()


def test_each_save_of_the_cursor_overwrites_the_same_file_in_place(monkeypatch):
    monkeypatch.setattr(spool_module, "CURSOR_SAVE_INTERVAL", 0.0)
    spool = write_run("http://x", "r", 25)
    records = list(spool.records(0))
    spool.save_cursor(records[1].offset, 1)
    cursor = spool.folder / "cursor"
    first = os.stat(cursor)
    spool.save_cursor(records[3].offset, 21)
    again = os.stat(cursor)
    # the same file, the same size: no new file renamed over the old one at each save
    assert (again.st_ino, again.st_size) == (first.st_ino, first.st_size)
    assert cursor.read_text().split()[:2] == [str(records[3].offset), "21"]
    folder = spool.folder
    spool.close()
    reopened = Spool.open_orphan(folder)
    assert (reopened.cursor_offset, reopened.acked_seq) == (records[3].offset, 21)
    reopened.close()


@pytest.mark.parametrize("damage", ["check", "torn", "empty", "no check"])
def test_a_cursor_that_fails_its_check_counts_as_none(damage):
    spool = write_run("http://x", "r", 25)
    offset = list(spool.records(0))[2].offset
    spool.save_cursor(offset, 11)
    folder = spool.folder
    spool.close()
    cursor = folder / "cursor"
    saved = cursor.read_text()
    assert saved.split()[:2] == [str(offset), "11"]
    cursor.write_text({"check": saved.replace(f"{offset} 11", f"{offset} 12"), "torn": saved[:len(str(offset)) + 2],
                       "empty": "", "no check": f"{offset} 11\n"}[damage])  # (the last: as earlier versions wrote)
    reopened = Spool.open_orphan(folder)
    # none: everything is sent again, and the server stores each event once
    assert (reopened.cursor_offset, reopened.acked_seq) == (0, 0)
    reopened.close()


def test_an_event_json_cannot_carry_is_dropped_alone(account, monkeypatch):
    monkeypatch.setenv("HYPERDASH_API_KEY", account.api_key)
    spool = write_run(account.server.url, "nan in the spool", 12, ended=False)
    # a spool written by an older version, before NaN was kept out of it
    spool.append(EVENT, None, 14, 1, 1000, b'{"type": "param", "payload": {"params": {"lr": NaN}}}')
    spool.append(framing.LINES, "stdout", 15, 1, 1000, b"after\n")
    spool.close()
    summary = upload_pending()
    assert summary.uploaded == [spool.folder.name] and not summary.failed
    run = account.wait_for_run("nan in the spool")
    assert texts(account.logs(run["uuid"])) == [f"line {i}" for i in range(12)] + ["after"]


def test_transport_refuses_nan_with_a_clear_error(account):
    transport = Transport(account.server.url, api_key=account.api_key)
    env = {"type": "metric", "timestamp": 1000, "sdk_run_uuid": str(uuid.uuid4()), "seq": 1,
           "payload": {"name": "x", "value": float("nan"), "timestamp": 1000, "is_internal": False, "step": None}}
    with pytest.raises(errors.APIError, match="cannot be sent as JSON") as caught:
        transport.send_events([env], "monitor")
    assert caught.value.status == 400
    transport.close()
