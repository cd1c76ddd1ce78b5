"""The ``hyperdash`` command (alias ``hd``).

Each command is a decorated function; the SDK modules it needs are imported inside it, so that
``hyperdash --help`` stays quick. Errors a person can act on leave as :class:`UserError`: one
line on stderr, no traceback, exit status 1 (or the status a shell would give).
"""

from __future__ import annotations

import contextlib
import sys
import time
from datetime import datetime, timezone

import click

from .events import DEFAULT_PORT, FINAL_STATUSES, MAX_NAME_CHARS, STATUSES, STDERR
from .version import __version__

__all__ = ["cli", "main", "UserError"]


class UserError(click.ClickException):
    """An error a person can act on: shown as one ``hyperdash: ...`` line, no traceback."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"hyperdash: {self.format_message()}", err=True)


@contextlib.contextmanager
def user_errors():
    """Turn the SDK's exceptions into one-line errors that say what to do."""
    from . import errors

    try:
        yield
    except errors.ServerUnreachable as exc:
        raise UserError(
            f"no Hyperdash server answers at {exc.url}: start one with `hyperdash server`, "
            "or try `hyperdash demo`"
        ) from None
    except errors.ConfigError as exc:
        raise UserError(str(exc)) from None
    except errors.AuthenticationError as exc:
        raise UserError(
            f"the server refused the credentials ({_reason(exc)}): "
            "run `hyperdash login` (or `hyperdash signup`) to get a new API key"
        ) from None
    except errors.RateLimited:
        raise UserError("the server asks to slow down: try again in a minute") from None
    except errors.APIError as exc:
        raise UserError(_reason(exc)) from None
    except errors.HyperdashError as exc:
        raise UserError(str(exc) or type(exc).__name__) from None


def _reason(exc) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


def _seconds(**bounds) -> click.FloatRange:
    """Seconds within ``bounds``; a wrong value reads "'abc' is not a valid number of seconds"."""
    kind = click.FloatRange(**bounds)
    kind.name = "number of seconds"
    return kind


def _configured_server() -> str:
    from . import config

    return config.server_url()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hyperdash")
def cli():
    """Monitor long-running jobs from a phone or a laptop."""


@cli.command()
def version():
    """Print the version of hyperdash."""
    click.echo(f"hyperdash {__version__}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on."
)
@click.option(
    "--db",
    "db_url",
    default=None,
    help="Database URL (sqlite:////abs/path.db or postgresql://...). Default: a SQLite file under ~/.hyperdash/.",
)
@click.option(
    "--lost-timeout",
    default=None,
    type=_seconds(min=0, min_open=True),
    metavar="SECONDS",
    help="Seconds without a heartbeat after which a running run is marked lost "
    "[default: 120; the environment variable HYPERDASH_LOST_TIMEOUT sets it too].",
)
def server(host, port, db_url, lost_timeout):
    """Run the Hyperdash server: the HTTP API and the web dashboard."""
    try:
        from .server.main import serve
    except ImportError as exc:
        raise click.ClickException(
            f"the server needs the server extra ({exc.name} is missing): pip install 'hyperdash[server]'"
        ) from None
    serve(host=host, port=port, db_url=db_url, lost_timeout=lost_timeout)


# --- accounts ---------------------------------------------------------------------------------

_server_option = click.option(
    "--server",
    "server_url",
    metavar="URL",
    default=None,
    help="The Hyperdash server to use; remembered in hyperdash.json.",
)
_email_option = click.option("--email", default=None, help="Your email address (else prompted).")
_password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts).",
)


def _credentials(email: str | None, password_stdin: bool, confirm: bool) -> tuple[str, str]:
    if email is None:
        if password_stdin:
            raise UserError("--password-stdin needs --email as well")
        email = click.prompt("Email")
    email = email.strip()
    if not email:
        raise UserError("the email address is empty")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    if not password:
        raise UserError("the password is empty")
    return email, password


def _chosen_server(server_url: str | None) -> str | None:
    if server_url is None:
        return None
    server_url = server_url.strip().rstrip("/")
    if not server_url.startswith(("http://", "https://")):
        raise UserError(f"--server must be an http:// or https:// address, not {server_url!r}")
    return server_url


def _sign_in(call, done: str, server_url: str | None, email: str | None, password_stdin: bool, confirm: bool):
    """Ask for the credentials, make the account ``call``, save what it returns."""
    from . import config

    server_url = _chosen_server(server_url)
    with user_errors():
        config.load_settings()  # a file that cannot be updated: say so before making an account
        url = server_url or _configured_server()
        email, password = _credentials(email, password_stdin, confirm=confirm)
        reply = call(url, email, password)
        updates = {key: reply[key] for key in ("api_key", "access_token") if reply.get(key)}
        if server_url:
            updates["server"] = server_url
        path = config.save_settings(updates)
    click.echo(f"{done} as {email} on {url}. Your API key is saved in {path}.")


def _credential_options(command):
    """--server, --email and --password-stdin, for signup and login."""
    for option in (_password_stdin_option, _email_option, _server_option):
        command = option(command)
    return command


@cli.command()
@_credential_options
def signup(server_url, email, password_stdin):
    """Create an account and save its API key to hyperdash.json."""
    from . import account

    _sign_in(account.signup, "Signed up", server_url, email, password_stdin, confirm=True)


@cli.command()
@_credential_options
def login(server_url, email, password_stdin):
    """Sign in and save a new API key for this machine to hyperdash.json."""
    from . import account

    _sign_in(account.login, "Logged in", server_url, email, password_stdin, confirm=False)


@cli.group()
def keys():
    """List, create and revoke API keys (rotate a key without stopping a job)."""


@keys.command("list")
def keys_list():
    """List the API keys of your account."""
    from . import account

    with user_errors():
        found = account.list_keys(account.Session.from_settings())
    if not found:
        click.echo("No API keys.")
        return
    _print_table(
        ("ID", "NAME", "CREATED", "LAST USED", "REVOKED"),
        [
            (str(key.get("id", "")), _clip(str(key.get("name") or ""), 40), _when(key.get("created_at")),
             _when(key.get("last_used_at")), _when(key.get("revoked_at")))
            for key in found
        ],
    )


@keys.command("create")
@click.option("--name", default=None, help="A name to recognise the key by (default: this host).")
@click.option(
    "--install",
    is_flag=True,
    help="Save the new key to hyperdash.json, where running jobs pick it up within minutes.",
)
def keys_create(name, install):
    """Create an API key and print it (it is shown only once)."""
    from . import account, config

    with user_errors():
        created = account.create_key(account.Session.from_settings(), name)
        if install:
            config.save_settings({"api_key": created["api_key"]})
    click.echo(created["api_key"])
    click.echo(f"Created key {created.get('id')} ({created.get('name')}); it is shown only this once.", err=True)
    if install:
        click.echo(f"Saved in {config.settings_path()}.", err=True)


@keys.command("revoke")
@click.argument("key_id", type=click.IntRange(min=1))
def keys_revoke(key_id):
    """Revoke the API key KEY_ID (see `hyperdash keys list`); it stops working at once."""
    from . import account

    with user_errors():
        account.revoke_key(account.Session.from_settings(), key_id)
    click.echo(f"Revoked key {key_id}.")


# --- monitoring -------------------------------------------------------------------------------

_NAME_HINTS = {
    "run": "Every run needs a name, given before the command: hyperdash run -n NAME COMMAND...",
    "pipe": "Every run needs a name: COMMAND | hyperdash pipe -n NAME",
}


def _check_run_name(ctx, param, value: str | None) -> str:
    if value is None:
        raise click.MissingParameter(ctx=ctx, param=param, message=_NAME_HINTS.get(ctx.info_name))
    if not value.strip():
        raise click.BadParameter("the run's name must not be empty")
    if len(value) > MAX_NAME_CHARS:
        raise click.BadParameter(f"the run's name is longer than {MAX_NAME_CHARS} characters")
    return value


_name_option = click.option(
    "-n", "--name", callback=_check_run_name, help="The run's name, as the dashboard shows it (required)."
)
_exit_timeout_option = click.option(
    "--exit-timeout",
    type=_seconds(min=0),
    default=None,
    metavar="SECONDS",
    help="How long to keep sending at the end before leaving the rest to `hyperdash sync`.",
)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@_name_option
@_exit_timeout_option
@click.option(
    "--merge-streams/--separate-streams",
    default=None,
    help="One channel for the command's stdout and stderr, so that they keep the order they were "
    "written in, but the run stores both as stdout; or a channel each, kept apart in the run, "
    "their order against each other not guaranteed. Default: merged when hyperdash's own stdout "
    "and stderr go to the same terminal, pipe or file, else separate.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(name, exit_timeout, merge_streams, command):
    """Run COMMAND (no shell in between) and monitor its output and exit status.

    \b
    hyperdash run -n "resnet50" python train.py --epochs 90
    hyperdash run -n "nightly" -- ./build.sh --release
    """
    from . import child

    shown = _warn_about_settings()
    try:
        exit_code = child.monitor_command(
            name, list(command), exit_timeout=exit_timeout, quiet_config_errors=shown,
            merge_streams=merge_streams,
        )
    except child.CommandError as exc:
        raise UserError(str(exc), exit_code=exc.exit_code) from None
    sys.exit(exit_code)


@cli.command()
@_name_option
@_exit_timeout_option
def pipe(name, exit_timeout):
    """Monitor standard input as a run and pass it through to standard output.

    \b
    python train.py 2>&1 | hyperdash pipe -n "resnet50"
    """
    from . import child

    shown = _warn_about_settings()
    sys.exit(child.monitor_stdin(name, exit_timeout=exit_timeout, quiet_config_errors=shown))


def _warn_about_settings() -> bool:
    """Say which hyperdash.json cannot be read, before the job starts, and let it start anyway:
    monitoring never stops a job. Its events wait in the spool until the file is fixed.
    Returns whether a warning was shown (the run then need not repeat it)."""
    from . import config
    from .errors import ConfigError

    try:
        paths = config.settings_files()
    except (OSError, RuntimeError):  # no working directory or no home: nothing to read then
        return False
    shown = False
    for path in paths:
        try:
            config.load_settings(path)
        except ConfigError as exc:
            click.echo(f"hyperdash: warning: {exc}; running the command anyway", err=True)
            shown = True
    return shown


@cli.command()
@click.option("--run", "run_uuid", default=None, metavar="UUID", help="Upload this run only.")
def sync(run_uuid):
    """Upload every run left in the local spool (safe to run again: nothing is sent twice)."""
    from . import uploader
    from .spool import spool_root

    if run_uuid is not None and run_uuid not in {p.name for p in _spool_folders(spool_root())}:
        raise UserError(f"no run {run_uuid} waits in the spool of this machine: "
                        "it was sent already, or it ran elsewhere (see `hyperdash runs`)")
    with user_errors(), _ProgressBars() as progress:
        summary = uploader.upload_pending(on_progress=progress.update, run_uuid=run_uuid)
    # Spools that a live process holds (a running job, the background uploader) are skipped.
    done = set(summary.uploaded) | set(summary.failed)
    busy = set(summary.busy) | {p.name for p in _spool_folders(spool_root()) if p.name not in done}
    if run_uuid is not None:
        busy &= {run_uuid}
    if not (summary.uploaded or summary.failed or busy):
        click.echo("Nothing to upload.")
    if summary.uploaded:
        runs_word = "run" if len(summary.uploaded) == 1 else "runs"
        click.echo(f"Uploaded {len(summary.uploaded)} {runs_word} ({summary.events_sent} events).")
    for name in sorted(busy):
        click.echo(f"Run {name} is held by another process (a running job or the background uploader); left to it.")
    for failed, why in summary.failed.items():
        click.echo(f"Run {failed} stays in the spool: {why}", err=True)
    if summary.failed:
        raise UserError(f"{len(summary.failed)} of the runs could not be uploaded; run `hyperdash sync` again later")


def _spool_folders(root) -> list:
    try:
        return [path for path in root.iterdir() if path.is_dir()]
    except OSError:
        return []


class _ProgressBars:
    """One click progress bar for each run that :func:`uploader.upload_pending` sends."""

    def __init__(self) -> None:
        self._run: str | None = None
        self._bar = None
        self._done = 0

    def __enter__(self) -> "_ProgressBars":
        return self

    def __exit__(self, *exc_info) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.render_finish()
            self._bar = None

    def update(self, run_uuid: str, sent: int, total: int) -> None:
        if run_uuid != self._run:
            self._close()
            self._run, self._done = run_uuid, 0
            self._bar = click.progressbar(length=max(total, 1), label=f"Run {run_uuid[:8]}", file=sys.stderr)
        if sent > self._done:
            self._bar.update(sent - self._done)
            self._done = sent


# --- following runs from a terminal -----------------------------------------------------------


@cli.command()
@click.option("-n", "--name", default=None, help="Only runs with this name.")
@click.option("-q", "--search", default=None, metavar="TEXT",
              help="Only runs whose name holds TEXT, in any case.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only runs in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def runs(name, search, status, limit):
    """List your recent runs, newest first, with status and duration."""
    from . import account

    with user_errors():
        found = account.list_runs(account.Session.from_settings(), name=name, search=search, status=status,
                                  limit=limit)
    if not found:
        click.echo("No runs yet.")
        return
    _print_table(
        ("RUN", "NAME", "STATUS", "STARTED", "DURATION"),
        [
            (r["uuid"][:8], _clip(r.get("name") or "", 40), _status_text(r), _when(r.get("started_at")),
             _duration(r.get("started_at"), r.get("ended_at")))
            for r in found
        ],
    )


def _status_text(run: dict) -> str:
    """``failure (4)``, ``killed (SIGKILL)``: the status with the exit code or signal behind it."""
    text = run.get("status") or ""
    if run.get("signal"):
        return f"{text} ({run['signal']})"
    if run.get("exit_code") not in (None, 0):
        return f"{text} ({run['exit_code']})"
    return text


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
def logs(run_ref, follow):
    """Print the log of RUN: a run id, the start of one, or a run name (its newest run)."""
    from . import account

    with user_errors():
        session = account.Session.from_settings()
        found = account.find_run(session, run_ref)
        if found is None:
            raise UserError(f"no run matches {run_ref!r}: see `hyperdash runs`")
        after = 0
        while True:
            lines = account.run_logs(session, found["uuid"], after=after)
            for line in lines:
                _print_line(line)
                after = line["seq"]
            if lines:
                continue
            if not follow or found.get("status") in FINAL_STATUSES:
                return
            time.sleep(0.5)
            found = account.get_run(session, found["uuid"])
            if found.get("status") in FINAL_STATUSES:
                # One more page: lines that arrived before the run ended.
                for line in account.run_logs(session, found["uuid"], after=after):
                    _print_line(line)
                    after = line["seq"]
                return


def _print_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Columns as wide as their widest cell, two spaces apart; the last one is not padded."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
    for row in (headers, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths)]
        click.echo("  ".join([*cells, row[-1]]))


def _print_line(line: dict) -> None:
    end = "" if line.get("partial") else "\n"
    click.echo(line.get("text", "") + end, nl=False, err=line.get("stream") == STDERR)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _parse_time(value) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        # Milliseconds since the epoch, as envelopes carry them (seconds if small).
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _when(value) -> str:
    parsed = _parse_time(value)
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S") if parsed else "-"


def _duration(started, ended) -> str:
    start = _parse_time(started)
    if start is None:
        return "-"
    end = _parse_time(ended) or datetime.now(timezone.utc)
    seconds = max(0.0, (end - start).total_seconds())
    if seconds < 60:
        text = f"{seconds:.1f}s"
    else:
        hours, rest = divmod(int(seconds), 3600)
        minutes, rest = divmod(rest, 60)
        text = f"{hours}h{minutes:02d}m{rest:02d}s" if hours else f"{minutes}m{rest:02d}s"
    return text if ended else text + " (running)"


# --- demo ------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--port",
    default=None,
    type=click.IntRange(0, 65535),
    help=f"Port for a demo server started here (default: the configured address's, else {DEFAULT_PORT}).",
)
def demo(port):
    """Show Hyperdash at work: start a local server where none answers, run a demo job."""
    from . import demo as demo_module

    with user_errors():
        demo_module.main(port=port)


def main():
    cli(prog_name="hyperdash")
