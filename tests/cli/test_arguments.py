"""Argument handling and the errors a person can act on, in-process with click's CliRunner."""

from __future__ import annotations

import json
import stat
import uuid

import pytest
from click.testing import CliRunner

from hyperdash.cli import cli
from hyperdash.version import __version__


@pytest.fixture
def invoke():
    runner = CliRunner()

    def call(*args, input=None, env=None):
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    return call


def one_line_error(result) -> str:
    """The single ``hyperdash: ...`` line a failed command printed (and no traceback)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("hyperdash: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_help_lists_every_command(invoke):
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("signup", "login", "keys", "run", "pipe", "sync", "runs", "logs", "demo", "version", "server"):
        assert f"  {command}" in result.output


def test_version(invoke):
    assert invoke("version").output == f"hyperdash {__version__}\n"
    assert __version__ in invoke("--version").output


def test_run_needs_a_name_and_a_command(invoke):
    result = invoke("run", "true")
    assert result.exit_code == 2 and "Missing option '-n'" in result.output
    assert "Every run needs a name, given before the command: hyperdash run -n NAME COMMAND..." in result.output
    result = invoke("run", "python", "train.py", "-n", "late")  # options after the command are its own
    assert result.exit_code == 2 and "given before the command" in result.output
    result = invoke("pipe")
    assert result.exit_code == 2 and "Every run needs a name: COMMAND | hyperdash pipe -n NAME" in result.output
    result = invoke("run", "-n", "nothing")
    assert result.exit_code == 2 and "Missing argument 'COMMAND...'" in result.output


def test_run_and_pipe_refuse_a_blank_or_overlong_name(invoke):
    for command in (("run", "-n", "  ", "true"), ("pipe", "-n", "")):
        result = invoke(*command)
        assert result.exit_code == 2 and "the run's name must not be empty" in result.output
    result = invoke("run", "-n", "x" * 513, "true")
    assert result.exit_code == 2 and "longer than 512 characters" in result.output


def test_run_refuses_a_negative_exit_timeout(invoke):
    result = invoke("run", "-n", "x", "--exit-timeout", "-1", "true")
    assert result.exit_code == 2 and "--exit-timeout" in result.output


def test_a_stall_window_over_30_days_is_refused_before_anything_runs(invoke, tmp_path):
    ran = tmp_path / "ran"
    for command in (("run", "-n", "x", "--stall-after", "31d", "touch", str(ran)),
                    ("run", "-n", "x", "--stall-after=2592001", "touch", str(ran)),
                    ("pipe", "-n", "x", "--stall-after", "800h")):
        result = invoke(*command, input="a line\n")
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--stall-after': a stall window is at most 30 days" in result.output
        assert "Traceback" not in result.output and "a line" not in result.output
    assert not ran.exists()


def test_command_not_found_exits_127_in_one_line(invoke, hyperdash_home):
    result = invoke("run", "-n", "missing", "no-such-command-hd-test", "arg")
    assert result.exit_code == 127
    assert one_line_error(result) == "hyperdash: command not found: no-such-command-hd-test"
    result = invoke("run", "-n", "missing", "./no/such/file")
    assert result.exit_code == 127
    assert one_line_error(result) == "hyperdash: command not found: ./no/such/file"
    # Nothing was started, so nothing waits in the spool either.
    assert not (hyperdash_home / "spool").exists() or not any((hyperdash_home / "spool").iterdir())


def test_a_file_that_is_not_executable_exits_126(invoke, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    result = invoke("run", "-n", "noexec", str(script))
    assert result.exit_code == 126
    assert one_line_error(result) == f"hyperdash: permission denied: {script}"
    result = invoke("run", "-n", "dir", str(tmp_path))
    assert result.exit_code == 126
    assert one_line_error(result) == f"hyperdash: is a directory: {tmp_path}"


def test_invalid_settings_file_is_named_with_its_parse_error(invoke, hyperdash_home):
    # Commands that need the file refuse in one line; `run` and `pipe` warn and go on (see
    # test_broken_settings.py).
    settings = hyperdash_home / "hyperdash.json"
    settings.write_text('{"api_key": "abc",')
    for args in (("runs",), ("keys", "list"), ("keys", "create")):
        result = invoke(*args)
        assert result.exit_code == 1, args
        line = one_line_error(result)
        assert str(settings) in line and "is not valid JSON" in line and "line 1" in line
    assert settings.read_text() == '{"api_key": "abc",'  # and the file was left alone


def test_signup_checks_the_settings_file_before_making_an_account(invoke, hyperdash_home, hyperdash_server):
    settings = hyperdash_home / "hyperdash.json"
    settings.write_text("[]")
    email = f"unsaved-{uuid.uuid4().hex[:10]}@example.com"
    args = ("signup", "--server", hyperdash_server.url, "--email", email, "--password-stdin")
    result = invoke(*args, input="correct horse battery\n")
    assert result.exit_code == 1
    assert one_line_error(result) == f"hyperdash: {settings} must hold a JSON object, not list"
    settings.unlink()
    # No account was made whose key could not be saved: the address is still free.
    result = invoke(*args, input="correct horse battery\n")
    assert result.exit_code == 0, result.output
    assert json.loads(settings.read_text())["api_key"]


def test_invalid_settings_file_in_the_working_directory_is_named(invoke, monkeypatch, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "hyperdash.json").write_text("api_key = 'not json'")
    monkeypatch.chdir(project)
    result = invoke("runs")
    assert result.exit_code == 1
    line = one_line_error(result)
    assert str(project / "hyperdash.json") in line and "is not valid JSON" in line


def test_no_key_says_how_to_get_one(invoke):
    for args in (("runs",), ("logs", "abc"), ("keys", "list"), ("keys", "create")):
        result = invoke(*args)
        assert result.exit_code == 1, args
        assert one_line_error(result) == (
            "hyperdash: no API key found: run `hyperdash login` (or `hyperdash signup` for a new account)"
        )


def test_no_server_names_the_address_and_how_to_start_one(invoke, monkeypatch, hyperdash_home, server_factory):
    url = server_factory(start=False).url  # a free port that nothing listens on
    monkeypatch.setenv("HYPERDASH_SERVER", url)
    monkeypatch.setenv("HYPERDASH_API_KEY", "some-key")
    result = invoke("runs")
    assert result.exit_code == 1
    assert one_line_error(result) == (
        f"hyperdash: no Hyperdash server answers at {url}: start one with `hyperdash server`, "
        "or try `hyperdash demo`"
    )
    result = invoke("login", "--email", "a@example.com", "--password-stdin", input="secret123\n")
    assert result.exit_code == 1 and url in one_line_error(result)
    assert not (hyperdash_home / "hyperdash.json").exists()


def test_signup_and_login_option_errors(invoke, hyperdash_home):
    result = invoke("signup", "--password-stdin", input="secret123\n")
    assert result.exit_code == 1
    assert one_line_error(result) == "hyperdash: --password-stdin needs --email as well"
    for server in ("ftp://example.com", "http://", "http://[broken", "http://host:port"):
        result = invoke("login", "--server", server, "--email", "a@b.c", "--password-stdin", input="x\n")
        assert result.exit_code == 1
        assert one_line_error(result) == f"hyperdash: --server must be an http:// or https:// address, not {server!r}"
    result = invoke("signup", "--email", "a@example.com", "--password-stdin", input="\n")
    assert one_line_error(result) == "hyperdash: the password is empty"
    assert not (hyperdash_home / "hyperdash.json").exists()


def test_option_values_are_checked(invoke):
    assert invoke("runs", "--status", "bogus").exit_code == 2
    assert invoke("runs", "--limit", "0").exit_code == 2
    assert invoke("keys", "revoke").exit_code == 2
    result = invoke("keys", "revoke", "abc")
    assert result.exit_code == 2 and "'abc' is not a valid integer" in result.output
    assert "Traceback" not in result.output
    result = invoke("server", "--port", "99999")
    assert result.exit_code == 2 and "99999 is not in the range 0<=x<=65535" in result.output
    result = invoke("server", "--lost-timeout", "0")
    assert result.exit_code == 2 and "--lost-timeout" in result.output


def test_seconds_and_key_ids_are_checked_in_plain_words(invoke):
    result = invoke("run", "-n", "x", "--exit-timeout", "abc", "true")
    assert result.exit_code == 2 and "'abc' is not a valid number of seconds" in result.output
    for endless in ("nan", "inf", "Infinity"):  # (no time to wait: refused before anything runs)
        result = invoke("run", "-n", "x", "--exit-timeout", endless, "true")
        assert result.exit_code == 2 and f"{endless!r} is not a valid number of seconds" in result.output
    result = invoke("keys", "revoke", "--", "-1")
    assert result.exit_code == 2 and "-1 is not in the range x>=1" in result.output


def test_sync_of_a_run_that_is_not_in_the_spool(invoke, hyperdash_home):
    for ref in ("no-such-run", ".."):
        result = invoke("sync", "--run", ref)
        assert result.exit_code == 1
        assert one_line_error(result) == (
            f"hyperdash: no run {ref} waits in the spool of this machine: "
            "it was sent already, or it ran elsewhere (see `hyperdash runs`)"
        )


def test_server_help_states_the_lost_timeout_default(invoke):
    help_text = " ".join(invoke("server", "--help").output.split())
    assert "[default: 120; the environment variable HYPERDASH_LOST_TIMEOUT sets it too]" in help_text
    assert invoke("logs").exit_code == 2
    assert invoke("pipe").exit_code == 2


def test_server_refuses_a_public_url_that_is_not_http(invoke):
    for url in ("hd.example.com", "https://", "https://[hd"):
        result = invoke("server", "--public-url", url)
        assert result.exit_code == 1
        assert one_line_error(result) == f"hyperdash: --public-url must be an http:// or https:// address, not {url!r}"


def test_server_refuses_a_public_url_from_the_environment_that_is_not_http(invoke, monkeypatch):
    for url in ("notaurl at all", "ftp://x"):
        monkeypatch.setenv("HYPERDASH_PUBLIC_URL", url)
        result = invoke("server")
        assert result.exit_code == 1
        assert one_line_error(result) == (
            f"hyperdash: HYPERDASH_PUBLIC_URL must be an http:// or https:// address, not {url!r}")


def test_an_address_that_leads_to_no_hyperdash_server_is_named(invoke, monkeypatch, hyperdash_home, account):
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):  # (another program's server: a file server)
        def log_message(self, *args):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HYPERDASH_API_KEY", account.api_key)
        for url in (f"http://127.0.0.1:{other.server_address[1]}", account.server.url + "/sub/path"):
            monkeypatch.setenv("HYPERDASH_SERVER", url)
            result = invoke("runs")
            assert result.exit_code == 1
            assert one_line_error(result).startswith(f"hyperdash: the server at {url}/api/v1/runs answered 404")
            assert one_line_error(result).endswith("not as a Hyperdash server answers: is its address right?")
    finally:
        other.shutdown()
        other.server_close()
    # A Hyperdash server's own 404 is said as it says it.
    monkeypatch.setenv("HYPERDASH_SERVER", account.server.url)
    result = invoke("logs", "no-such-run-name")
    assert one_line_error(result) == "hyperdash: no run matches 'no-such-run-name': see `hyperdash runs`"


def test_an_unknown_option_of_run_is_a_usage_error_not_a_command(invoke):
    for args in (("--bogus", "-n", "x", "echo", "hi"), ("-n", "x", "--bogus", "--", "echo", "hi")):
        result = invoke("run", *args)
        assert result.exit_code == 2 and "No such option '--bogus'" in result.output
        assert "command not found" not in result.output
    result = invoke("run", "-n", "x", "--exit-timout", "3", "true")
    assert result.exit_code == 2 and "Did you mean '--exit-timeout'?" in result.output
