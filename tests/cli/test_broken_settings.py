"""A hyperdash.json that cannot be read never stops a job: ``run`` and ``pipe`` warn and go on."""

from __future__ import annotations

import subprocess
import sys

from cli_support import HYPERDASH, bare_env, py

BROKEN = "{bad"


def job_env(home, server_url: str) -> dict[str, str]:
    """A person's environment whose events cannot be sent now: they wait in the spool, and the
    background uploader gives up at once instead of outliving the test."""
    env = bare_env(home)
    env.update(HYPERDASH_SERVER=server_url, HYPERDASH_UPLOADER_PATIENCE="0", HYPERDASH_EXIT_TIMEOUT="1")
    return env


def settings_warning(stderr: bytes) -> str:
    first = stderr.decode().splitlines()[0]
    assert first.startswith("hyperdash: warning: ") and first.endswith("; running the command anyway"), stderr
    return first


def test_run_with_a_broken_settings_file_runs_the_job_and_keeps_its_events(account, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "hyperdash.json").write_text(BROKEN)
    home = tmp_path / "home"
    home.mkdir()
    (home / "hyperdash.json").write_text(f'{{"api_key": "{account.api_key}"}}')
    env = job_env(home, account.server.url)

    code = "import sys; print('ran'); sys.exit(3)"
    result = subprocess.run([*HYPERDASH, "run", "-n", "broken settings", *py(code)], cwd=project,
                            capture_output=True, env=env, timeout=60)
    assert result.returncode == 3  # the job's own exit status
    assert result.stdout == b"ran\n"
    line = settings_warning(result.stderr)
    assert str(project / "hyperdash.json") in line and "is not valid JSON" in line and "line 1" in line
    assert result.stderr.decode().count("is not valid JSON") == 1, "the parse error is said once"
    assert "Traceback" not in result.stderr.decode()
    assert (project / "hyperdash.json").read_text() == BROKEN  # left alone

    # Its events wait in the spool, unsent; once the file is fixed they go (`hyperdash sync`, or
    # the background uploader where it gets there first).
    assert len(list((home / "spool").iterdir())) == 1
    assert account.runs(name="broken settings") == []
    (project / "hyperdash.json").unlink()

    def sync() -> bool:
        done = subprocess.run([*HYPERDASH, "sync"], cwd=project, capture_output=True, env=env, timeout=60)
        return done.returncode == 0 and b"held by another process" not in done.stdout

    account.wait_for(sync, 20, interval=0.3)
    run = account.wait_for_run("broken settings", "failure")
    assert run["exit_code"] == 3
    assert [line["text"] for line in account.logs(run["uuid"])] == ["ran"]


def test_pipe_with_a_broken_settings_file_passes_everything_through(tmp_path, server_factory):
    project = tmp_path / "project"
    project.mkdir()
    (project / "hyperdash.json").write_text(BROKEN)
    env = job_env(tmp_path / "home", server_factory(start=False).url)
    producer = subprocess.Popen([sys.executable, "-c", "for i in range(2000): print('line', i)"],
                                stdout=subprocess.PIPE)
    try:
        result = subprocess.run([*HYPERDASH, "pipe", "-n", "p2"], stdin=producer.stdout, cwd=project,
                                capture_output=True, env=env, timeout=60)
    finally:
        producer.stdout.close()
        producer.wait(30)
    assert producer.returncode == 0  # not killed by a broken pipe
    assert result.returncode == 0
    assert result.stdout == b"".join(b"line %d\n" % i for i in range(2000))
    assert "is not valid JSON" in settings_warning(result.stderr)


def test_a_home_that_cannot_be_created_still_runs_the_job(tmp_path, server_factory):
    env = job_env(tmp_path, server_factory(start=False).url)
    env["HYPERDASH_HOME"] = "/dev/null/x"  # neither settings, spool nor log can live there

    result = subprocess.run([*HYPERDASH, "run", "-n", "no home", *py("print('ran')")],
                            capture_output=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ran\n"
    assert "/dev/null/x/hyperdash.json" in settings_warning(result.stderr)
    assert "Traceback" not in result.stderr.decode()

    result = subprocess.run([*HYPERDASH, "pipe", "-n", "no home"], input=b"piped\n",
                            capture_output=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"piped\n"
    assert "Traceback" not in result.stderr.decode()


def test_a_server_address_that_is_no_address_is_said_and_never_hurts_the_job(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    settings = home / "hyperdash.json"
    settings.write_text('{"api_key": "some key", "server": 5}')
    env = bare_env(home)
    listed = subprocess.run([*HYPERDASH, "runs"], capture_output=True, env=env, timeout=60)
    assert listed.returncode == 1
    assert listed.stderr.decode() == (f"hyperdash: the server address 5 in {settings} is not an http:// or https:// "
                                      "address\n")
    code = "import sys; print('ran'); sys.exit(3)"
    for server, where in (("", str(settings)), ("localhost:4680", "the environment variable HYPERDASH_SERVER"),
                          ("http://host:port", "the environment variable HYPERDASH_SERVER")):
        result = subprocess.run([*HYPERDASH, "run", "-n", "nowhere", *py(code)], capture_output=True, timeout=60,
                                env={**env, "HYPERDASH_SERVER": server})
        assert result.returncode == 3 and result.stdout == b"ran\n"  # the job as it is
        said = result.stderr.decode()
        assert said.startswith("hyperdash: monitoring is off for this run: the server address ")
        assert f" in {where} is not an http:// or https:// address\n" in said and "Traceback" not in said
    assert not (home / "spool").exists() or not any((home / "spool").iterdir())  # no uploader retrying for ever


def test_the_environment_serves_where_the_settings_file_is_broken(account, tmp_path):
    # HYPERDASH_API_KEY and HYPERDASH_SERVER come before the file: a broken one is no reason to stop.
    home = tmp_path / "home"
    home.mkdir()
    (home / "hyperdash.json").write_text(BROKEN)
    env = bare_env(home)
    env.update(HYPERDASH_SERVER=account.server.url, HYPERDASH_API_KEY=account.api_key)
    listed = subprocess.run([*HYPERDASH, "runs"], capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("No runs yet") or listed.stdout.startswith("RUN"), listed.stdout
    # Without the key in the environment, the file is needed, and its fault is said in one line.
    del env["HYPERDASH_API_KEY"]
    refused = subprocess.run([*HYPERDASH, "runs"], capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 1 and "is not valid JSON" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
