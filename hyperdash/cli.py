"""The ``hyperdash`` command (alias ``hd``).

Each command is a decorated function; the SDK modules it needs are imported inside it, so that
``hyperdash --help`` stays quick. Errors a person can act on leave as :class:`UserError`: one
line on stderr, no traceback, exit status 1 (or the status a shell would give).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from .cli_output import ProgressBars, clip, duration, print_line, print_table, status_text, when
from .errors import AuthenticationError, HyperdashError
from .events import DEFAULT_PORT, FINAL_STATUSES, MAX_NAME_CHARS, STATUSES
from .version import __version__

__all__ = ["cli", "main", "UserError"]

F = TypeVar("F", bound=Callable[..., Any])


class UserError(click.ClickException, HyperdashError):
    """An error a person can act on: shown as one ``hyperdash: ...`` line, no traceback."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        # click 8.5 declares exit_code a class variable, but it reads the instance's: a code of
        # one error's own (a job's exit status passed on) belongs on the instance.
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"hyperdash: {self.format_message()}", err=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the SDK's exceptions into one-line errors that say what to do."""
    from . import errors

    try:
        yield
    except UserError:
        raise
    except errors.ServerUnreachable as exc:
        raise UserError(
            f"no Hyperdash server answers at {exc.url}: start one with `hyperdash server`, "
            "or try `hyperdash demo`"
        ) from None
    except errors.ConfigError as exc:
        raise UserError(str(exc)) from None
    except errors.AuthenticationError as exc:
        raise UserError(_refused(exc)) from None
    except errors.RateLimited:
        raise UserError("the server asks to slow down: try again in a minute") from None
    except errors.APIError as exc:
        raise UserError(_reason(exc)) from None
    except errors.HyperdashError as exc:
        raise UserError(str(exc) or type(exc).__name__) from None


def _refused(exc: AuthenticationError) -> str:
    """What was refused, and what to do: a key is named by where it came from, since a new one
    saved by `hyperdash login` is not used while that place holds the old one."""
    from . import config

    login = "run `hyperdash login` (or `hyperdash signup`) to get a new API key"
    if not exc.key_source:  # an access token, or no key at all
        return f"the server refused the credentials ({_reason(exc)}): {login}"
    if exc.key_source == config.ENV_SOURCE:
        return f"{exc.refused_key()}: set HYPERDASH_API_KEY to a live key, or unset it and {login}"
    if exc.key_source != str(config.settings_path()):
        return f"{exc.refused_key()}: put a live key there, or remove that one and {login}"
    return f"{exc.refused_key()}: {login}"


def _reason(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


def _seconds(min: float, min_open: bool = False) -> click.FloatRange:
    """Seconds from ``min`` on; a wrong value reads "'abc' is not a valid number of seconds"."""
    kind = click.FloatRange(min=min, min_open=min_open)
    kind.name = "number of seconds"
    return kind


def _configured_server() -> str:
    from . import config

    return config.server_url()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hyperdash")
def cli() -> None:
    """Monitor long-running jobs from a phone or a laptop."""


@cli.command()
def version() -> None:
    """Print the version of hyperdash."""
    click.echo(f"hyperdash {__version__}")


@cli.group(invoke_without_command=True)
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
@click.option(
    "--no-signup",
    is_flag=True,
    help="Close sign-up: accounts are made by the admin with `hyperdash server adduser`.",
)
@click.option(
    "--forwarded-allow-ips",
    default=None,
    metavar="ADDRESSES",
    help="Proxies whose X-Forwarded-For is believed (comma-separated addresses or networks, '*' for "
    "any) [default: $FORWARDED_ALLOW_IPS, else 127.0.0.1].",
)
@click.option(
    "--public-url",
    default=None,
    metavar="URL",
    help="The dashboard's address as people reach it, for the links in notifications "
    "[default: $HYPERDASH_PUBLIC_URL, else the address the server listens on].",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    metavar="N",
    help="Server processes serving this address, all on the same database (more than 1 needs PostgreSQL).",
)
@click.pass_context
def server(ctx: click.Context, host: str, port: int, db_url: str | None, lost_timeout: float | None, no_signup: bool,
           forwarded_allow_ips: str | None, public_url: str | None, workers: int) -> None:
    """Run the Hyperdash server: the HTTP API and the web dashboard."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        from .server.main import serve
    except ImportError as exc:
        raise _no_server_extra(exc) from None
    if public_url is not None and not public_url.startswith(("http://", "https://")):
        raise UserError(f"--public-url must be an http:// or https:// address, not {public_url!r}")
    serve(host=host, port=port, db_url=db_url, lost_timeout=lost_timeout, signup=not no_signup,
          forwarded_allow_ips=forwarded_allow_ips, public_url=public_url, workers=workers)


def _no_server_extra(exc: ImportError) -> UserError:
    return UserError(
        f"the server needs the server extra ({exc.name} is missing): pip install 'hyperdash[server]'"
    )


@server.command()
@click.option("--db", "db_url", default=None,
              help="The server's database URL (as for `hyperdash server --db`). Default: the SQLite file "
              "under ~/.hyperdash/.")
@click.option("--email", required=True, help="The new account's email address.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input (else prompted twice).")
def adduser(db_url: str | None, email: str, password_stdin: bool) -> None:
    """Make an account (for a server started with --no-signup)."""
    try:
        from .server.admin import AdminError, add_user
    except ImportError as exc:
        raise _no_server_extra(exc) from None
    email, password = _credentials(email, password_stdin, new_account=True)
    try:
        stored = add_user(db_url, email, password)
    except AdminError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"Made the account {stored}: sign in with `hyperdash login` or on the dashboard.")


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


def _credentials(email: str | None, password_stdin: bool, new_account: bool) -> tuple[str, str]:
    """The email and password, from the options, standard input or prompts. For a new account
    the password is checked against the server's rule at once and typed twice."""
    if email is None:
        if password_stdin:
            raise UserError("--password-stdin needs --email as well")
        email = click.prompt("Email")
    email = email.strip()
    if not email:
        raise UserError("the email address is empty")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        problem = _too_short(password) if new_account and password else None
        if problem:
            raise UserError(problem)
    else:
        password = _prompt_password(new_account)
    if not password:
        raise UserError("the password is empty")
    return email, password


def _prompt_password(new_account: bool) -> str:
    if not new_account:
        entered: str = click.prompt("Password", hide_input=True)
        return entered
    while True:
        password: str = click.prompt("Password", hide_input=True)
        problem = _too_short(password)
        if problem:
            # Said before the second prompt: nobody should type a refused password twice.
            click.echo(f"Error: {problem}; try again.", err=True)
            continue
        if click.prompt("Repeat for confirmation", hide_input=True) == password:
            return password
        click.echo("Error: the two entered values do not match.", err=True)


def _too_short(password: str) -> str | None:
    """Why the server would refuse ``password`` for a new account, or None."""
    from .account import MIN_PASSWORD_CHARS

    if len(password) < MIN_PASSWORD_CHARS:
        return f"the password must have {MIN_PASSWORD_CHARS} characters or more"
    return None


def _chosen_server(server_url: str | None) -> str | None:
    if server_url is None:
        return None
    server_url = server_url.strip().rstrip("/")
    if not server_url.startswith(("http://", "https://")):
        raise UserError(f"--server must be an http:// or https:// address, not {server_url!r}")
    return server_url


def _sign_in(call: Callable[[str, str, str], dict[str, Any]], done: str, server_url: str | None, email: str | None,
             password_stdin: bool, new_account: bool) -> None:
    """Ask for the credentials, make the account ``call``, save what it returns."""
    from . import config

    server_url = _chosen_server(server_url)
    with user_errors():
        config.load_settings()  # a file that cannot be updated: say so before making an account
        url = server_url or _configured_server()
        email, password = _credentials(email, password_stdin, new_account=new_account)
        reply = call(url, email, password)
        updates = {key: reply[key] for key in ("api_key", "access_token") if reply.get(key)}
        if server_url:
            updates["server"] = server_url
        path = config.save_settings(updates)
    click.echo(f"{done} as {email} on {url}. Your API key is saved in {path}.")


def _credential_options(command: F) -> F:
    """--server, --email and --password-stdin, for signup and login."""
    for option in (_password_stdin_option, _email_option, _server_option):
        command = option(command)
    return command


@cli.command()
@_credential_options
def signup(server_url: str | None, email: str | None, password_stdin: bool) -> None:
    """Create an account and save its API key to hyperdash.json."""
    from . import account

    _sign_in(account.signup, "Signed up", server_url, email, password_stdin, new_account=True)


@cli.command()
@_credential_options
def login(server_url: str | None, email: str | None, password_stdin: bool) -> None:
    """Sign in and save a new API key for this machine to hyperdash.json."""
    from . import account

    _sign_in(account.login, "Logged in", server_url, email, password_stdin, new_account=False)


@cli.group()
def keys() -> None:
    """List, create and revoke API keys (rotate a key without stopping a job)."""


@keys.command("list")
def keys_list() -> None:
    """List the API keys of your account."""
    from . import account

    with user_errors():
        found = account.list_keys(account.Session.from_settings())
    if not found:
        click.echo("No API keys.")
        return
    print_table(
        ("ID", "NAME", "CREATED", "LAST USED", "REVOKED"),
        [
            (str(key.get("id", "")), clip(str(key.get("name") or ""), 40), when(key.get("created_at")),
             when(key.get("last_used_at")), when(key.get("revoked_at")))
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
def keys_create(name: str | None, install: bool) -> None:
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
def keys_revoke(key_id: int) -> None:
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


def _check_run_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    if value is None:
        raise click.MissingParameter(ctx=ctx, param=param, message=_NAME_HINTS.get(ctx.info_name or ""))
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
def run(name: str, exit_timeout: float | None, merge_streams: bool | None, command: tuple[str, ...]) -> None:
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
def pipe(name: str, exit_timeout: float | None) -> None:
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
@click.option("--server", "server_url", default=None, metavar="URL",
              help="Send the runs to this server instead of the one they were meant for.")
@click.option("--list", "list_only", is_flag=True, help="List the runs waiting in the spool; send nothing.")
@click.option("--discard", "discard", default=None, metavar="RUN",
              help="Delete RUN's spool (its id or the start of it) without sending it.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before --discard deletes.")
def sync(run_uuid: str | None, server_url: str | None, list_only: bool, discard: str | None, yes: bool) -> None:
    """Upload every run left in the local spool (safe to run again: nothing is sent twice).

    \b
    hyperdash sync                                  # send what waits, say what could not go and why
    hyperdash sync --list                           # what waits, for which server, and why
    hyperdash sync --server https://hd.example.com  # send it all to another server
    hyperdash sync --discard 3f2a9c1e               # delete a run's spool (asks first)
    """
    from . import uploader

    server_url = _chosen_server(server_url)
    if discard is not None:
        _discard_spool(discard, yes)
        return
    if list_only:
        _list_spools()
        return
    if run_uuid is not None:
        run_uuid = _waiting_run(run_uuid).uuid
    with user_errors(), ProgressBars() as progress:
        summary = uploader.upload_pending(on_progress=progress.update, run_uuid=run_uuid, server=server_url)
    waiting = {run.uuid: run for run in _waiting_runs()}
    done = set(summary.uploaded) | set(summary.failed)
    # Spools that a live process holds (a running job, the background uploader) are skipped.
    busy = set(summary.busy) | {run for run in waiting if run not in done}
    if run_uuid is not None:
        busy &= {run_uuid}
    if not (summary.uploaded or summary.failed or busy):
        click.echo("Nothing to upload.")
    if summary.uploaded:
        runs_word = "run" if len(summary.uploaded) == 1 else "runs"
        click.echo(f"Uploaded {len(summary.uploaded)} {runs_word} ({summary.events_sent} events).")
    for run in sorted(busy):
        click.echo(f"Skipped run {_run_label(run, waiting)}: held by another process (a running job or "
                   "the background uploader), which sends it.")
    if summary.failed:
        for run, why in summary.failed.items():
            click.echo(f"Run {_run_label(run, waiting)} stays in the spool: {why}", err=True)
        click.echo("(`hyperdash sync --server URL` sends them to another server; "
                   "`hyperdash sync --discard RUN` deletes one.)", err=True)
        raise UserError(f"{len(summary.failed)} of the runs could not be uploaded; run `hyperdash sync` again later")


class _WaitingRun:
    """A run whose spool is on this machine: its id, name, server and unsent event count."""

    def __init__(self, folder: Path) -> None:
        from .spool import Spool

        self.folder = folder
        self.uuid = folder.name
        meta = Spool(folder).meta()
        meta = meta if isinstance(meta, dict) else {}
        self.name = str(meta.get("name") or "?")
        self.server = str(meta.get("server") or _configured_server())
        spool = Spool.open_orphan(folder)
        self.held = spool is None
        self.unsent: int | None = None
        if spool is not None:
            try:
                self.unsent = sum(spool.unsent())
            finally:
                spool.close()


def _waiting_runs() -> list[_WaitingRun]:
    from .spool import all_spools

    return [_WaitingRun(folder) for folder in all_spools()]


def _waiting_run(ref: str) -> _WaitingRun:
    """The waiting run whose id is ``ref`` or starts with it."""
    ref = ref.strip().lower()
    found = [run for run in _waiting_runs() if run.uuid == ref] or \
        [run for run in _waiting_runs() if ref and run.uuid.startswith(ref)]
    if not found:
        raise UserError(f"no run {ref} waits in the spool of this machine: "
                        "it was sent already, or it ran elsewhere (see `hyperdash runs`)")
    if len(found) > 1:
        raise UserError(f"{ref!r} is the start of {len(found)} runs' ids: give more of it "
                        "(see `hyperdash sync --list`)")
    return found[0]


def _run_label(run_uuid: str, waiting: dict[str, _WaitingRun]) -> str:
    run = waiting.get(run_uuid)
    return f"{run_uuid} ({run.name}, for {run.server})" if run else run_uuid


def _list_spools() -> None:
    from . import uploader

    runs = _waiting_runs()
    if not runs:
        click.echo("Nothing waits in the spool.")
        return
    book = uploader.ServerBook.load()
    rows: list[tuple[str, ...]] = []
    for run in runs:
        if run.held:
            state = "held by a live process"
        elif run.server in book.entries:
            state = book.describe(run.server)
        else:
            state = "waiting"
        events = "?" if run.unsent is None else str(run.unsent)
        rows.append((run.uuid, clip(run.name, 30), run.server, events, state))
    print_table(("RUN", "NAME", "SERVER", "EVENTS", "STATE"), rows)


def _discard_spool(ref: str, yes: bool) -> None:
    from .spool import Spool

    run = _waiting_run(ref)
    spool = Spool.open_orphan(run.folder)
    if spool is None:
        raise UserError(f"run {run.uuid} is held by a live process (a running job or the background "
                        "uploader): it cannot be deleted now")
    try:
        events = sum(spool.unsent())
        if not yes:
            click.confirm(f"Delete run {run.uuid} ({run.name}): {events} events never sent to {run.server}?",
                          abort=True, err=True)
        spool.remove()
    finally:
        spool.close()
    click.echo(f"Deleted the spool of run {run.uuid} ({run.name}, {events} events not sent).")


# --- following runs from a terminal -----------------------------------------------------------


@cli.command()
@click.option("-n", "--name", default=None, help="Only runs with this name.")
@click.option("-q", "--search", default=None, metavar="TEXT",
              help="Only runs whose name holds TEXT, in any case.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only runs in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def runs(name: str | None, search: str | None, status: str | None, limit: int) -> None:
    """List your recent runs, newest first, with status and duration."""
    from . import account

    with user_errors():
        found = account.list_runs(account.Session.from_settings(), name=name, search=search, status=status,
                                  limit=limit)
    if not found:
        click.echo("No runs yet.")
        return
    print_table(
        ("RUN", "NAME", "STATUS", "STARTED", "DURATION"),
        [
            (r["uuid"][:8], clip(r.get("name") or "", 40), status_text(r), when(r.get("started_at")),
             duration(r.get("started_at"), r.get("ended_at")))
            for r in found
        ],
    )


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
def logs(run_ref: str, follow: bool) -> None:
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
                print_line(line)
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
                    print_line(line)
                    after = line["seq"]
                return


@cli.command("open")
@click.argument("run_ref", metavar="RUN")
def open_run(run_ref: str) -> None:
    """Open the dashboard page of RUN (a run id, the start of one, or a run name) in a
    browser; where there is no browser, print its address."""
    from . import account, config
    from .links import run_page_url

    with user_errors():
        found = account.find_run(account.Session.from_settings(), run_ref)
    if found is None:
        raise UserError(f"no run matches {run_ref!r}: see `hyperdash runs`")
    url = run_page_url(config.server_url(), found["uuid"])
    if _open_in_browser(url):
        click.echo(f"Opened {url}", err=True)
    else:
        click.echo(url)


def _open_in_browser(url: str) -> bool:
    """Whether a browser of this machine took ``url`` (none on a server without a display)."""
    import webbrowser

    try:
        return webbrowser.get().open(url)
    except webbrowser.Error:
        return False


# --- demo ------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--port",
    default=None,
    type=click.IntRange(0, 65535),
    help=f"Port for a demo server started here (default: the configured address's, else {DEFAULT_PORT}).",
)
def demo(port: int | None) -> None:
    """Show Hyperdash at work: start a local server where none answers, run a demo job."""
    from . import demo as demo_module

    with user_errors():
        demo_module.main(port=port)


def main() -> None:
    """The ``hyperdash`` and ``hd`` console scripts."""
    cli(prog_name="hyperdash")
