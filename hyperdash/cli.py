"""The ``hyperdash`` command (alias ``hd``).

Each command is a decorated function; the SDK modules it needs are imported inside it, so that
``hyperdash --help`` stays quick. Errors a person can act on leave as :class:`UserError`: one
line on stderr, no traceback, exit status 1 (or the status a shell would give).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from .cli_output import ProgressBars, clip, duration, print_line, print_table, status_text, when
from .errors import AuthenticationError, HyperdashError
from .events import DEFAULT_PORT, FINAL_STATUSES, LOST, MAX_NAME_CHARS, STATUS_FILTERS
from .version import __version__

__all__ = ["cli", "main", "UserError"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


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
    except errors.RateLimited as exc:
        # (the server's own words say why and for how long; else its Retry-After does)
        wait = f"try again in {math.ceil(exc.retry_after)} s" if exc.retry_after else "try again shortly"
        said = exc.message if exc.message != "rate limited" else wait
        raise UserError(f"the server asks to slow down: {said}") from None
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


class _Seconds(click.FloatRange):
    """A finite number of seconds in a range (``nan`` and ``inf`` are no time to wait)."""

    name = "number of seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a valid number of seconds", param, ctx)
        return seconds


def _seconds(min: float, min_open: bool = False) -> click.FloatRange:
    """Seconds from ``min`` on; a wrong value reads "'abc' is not a valid number of seconds"."""
    return _Seconds(min=min, min_open=min_open)


def _stall_window(value: str | None, param: click.Parameter) -> float | None:
    """A stall window (90s, 10m, 1h, off; at most 30 days) in seconds; a wrong one reads as
    click's usage error."""
    from .settings import parse_stall_window

    if value is None:
        return None
    try:
        return parse_stall_window(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _stall_after_option(help: str) -> Callable[[F], F]:
    """``--stall-after DURATION``, given to the command in seconds (None when left out)."""
    return click.option("--stall-after", default=None, metavar="DURATION", help=help,
                        callback=lambda ctx, param, value: _stall_window(value, param))


# The help of a run's --stall-after (``what`` says where the run's output comes from).
_RUN_STALL_HELP = ("Mark the run stalled when {what} no output for this long: 90s, 10m, 1h; "
                   "0 or off never [default: the server's window].")


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
@_stall_after_option(
    "How long a running run may make no progress (no output, metric or param) before it is "
    "marked stalled: 90s, 10m, 1h; 0 or off to never [default: 30m; the environment variable "
    "HYPERDASH_STALL_AFTER sets it too]. A run's own --stall-after or stall_after= wins."
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
    "--keep-days",
    default=None,
    type=click.IntRange(1, 36500),
    metavar="DAYS",
    help="Remove finished runs older than DAYS days, in the background (each account may choose fewer) "
    "[default: keep them].",
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
def server(ctx: click.Context, host: str, port: int, db_url: str | None, lost_timeout: float | None,
           stall_after: float | None, no_signup: bool, forwarded_allow_ips: str | None, public_url: str | None,
           keep_days: int | None, workers: int) -> None:
    """Run the Hyperdash server: the HTTP API and the web dashboard."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        from .server.main import serve
    except ImportError as exc:
        raise _no_server_extra(exc) from None
    from .config import is_http_address

    # (the option, else the environment variable: whichever the server will use, checked alike)
    given, where = (public_url, "--public-url") if public_url is not None else (
        os.environ.get("HYPERDASH_PUBLIC_URL", "").strip() or None, "HYPERDASH_PUBLIC_URL")
    if given is not None and not is_http_address(given):
        raise UserError(f"{where} must be an http:// or https:// address, not {given!r}")
    serve(host=host, port=port, db_url=db_url, lost_timeout=lost_timeout, signup=not no_signup,
          forwarded_allow_ips=forwarded_allow_ips, public_url=public_url, stall_after=stall_after,
          keep_days=keep_days, workers=workers)


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


def _hidden_prompt(text: str) -> str:
    """``click.prompt`` with the input hidden where there is a terminal to hide it in; where
    there is none, without Python's warning about it (one line of its own says the input may
    be echoed), and an input that ends first is one line of error."""
    import getpass
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", getpass.GetPassWarning)
        try:
            entered: str = click.prompt(text, hide_input=True)
        except click.Abort:
            if sys.stdin is not None and sys.stdin.isatty():
                raise
            click.echo(err=True)  # (ends the prompt's line)
            raise UserError("no password came on standard input: type it at a terminal, or pipe it "
                            "with --password-stdin") from None
    return entered


def _prompt_password(new_account: bool) -> str:
    if not new_account:
        return _hidden_prompt("Password")
    while True:
        password = _hidden_prompt("Password")
        problem = _too_short(password)
        if problem:
            # Said before the second prompt: nobody should type a refused password twice.
            click.echo(f"Error: {problem}; try again.", err=True)
            continue
        if _hidden_prompt("Repeat for confirmation") == password:
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
    from .config import is_http_address

    if not is_http_address(server_url):
        raise UserError(f"--server must be an http:// or https:// address, not {server_url!r}")
    return server_url.strip().rstrip("/")


def _sign_in(call: Callable[[str, str, str], dict[str, Any]], done: str, server_url: str | None, email: str | None,
             password_stdin: bool, new_account: bool) -> None:
    """Ask for the credentials, make the account ``call``, save what it returns."""
    from . import config

    server_url = _chosen_server(server_url)
    with user_errors():
        config.check_settings_writable()  # a file that cannot be updated: say so before making an account
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
        if install:
            config.check_settings_writable()  # (a key made and not saved could never be shown again)
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


# --- notifications ----------------------------------------------------------------------------

NOTIFY_KINDS = ("webhook", "slack", "discord", "ntfy", "telegram", "email")
NOTIFY_EVENTS = ("success", "failure", "killed", "user_canceled", "lost", "back", "stalled", "rule")
# Which kinds each setting belongs to: a setting given to another kind is a mistake to point out.
_NOTIFY_SETTINGS = {
    "url": ("webhook", "slack", "discord", "ntfy"), "secret": ("webhook",), "token": ("ntfy", "telegram"),
    "priority": ("ntfy",), "chat_id": ("telegram",), "host": ("email",), "port": ("email",),
    "security": ("email",), "username": ("email",), "from": ("email",), "to": ("email",),
}


def _notify_events(value: str | None) -> list[str] | None:
    """``--events a,b``: those events; ``default``: the server's defaults (None)."""
    if value is None or value.strip() == "default":
        return None
    found = [e.strip() for e in value.split(",") if e.strip()]
    unknown = [e for e in found if e not in NOTIFY_EVENTS]
    if unknown or not found:
        raise UserError(f"--events takes some of {', '.join(NOTIFY_EVENTS)} (comma-separated), or default; "
                        f"not {(unknown or [value])[0]!r}")
    return found


def _notify_session() -> Any:
    from . import account

    return account.Session.from_settings()


@cli.group()
def notify() -> None:
    """Get told when runs end, go silent or stall: by webhook, Slack, Discord, ntfy, Telegram or
    email (phones: add Web Push from the dashboard's settings page)."""


@notify.command("add")
@click.argument("kind", type=click.Choice(NOTIFY_KINDS))
@click.option("--name", default=None, help="A name to recognise the channel by.")
@click.option("--url", default=None, help="webhook, slack, discord: the hook's address; ntfy: the topic's.")
@click.option("--secret", default=None, help="webhook: the signing secret (default: a new one, printed once).")
@click.option("--token", default=None, help="telegram: the bot's token; ntfy: an access token (tk_...).")
@click.option("--chat-id", "chat_id", default=None, help="telegram: the chat to write to.")
@click.option("--priority", default=None, help="ntfy: min, low, default, high or max.")
@click.option("--host", default=None, help="email: the SMTP server.")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="email: its port.")
@click.option("--security", default=None, type=click.Choice(("starttls", "tls", "none")),
              help="email: starttls (default), tls or none.")
@click.option("--username", default=None, help="email: the SMTP login (with --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="email: read the SMTP password from stdin.")
@click.option("--from", "sender", default=None, help="email: the sender's address.")
@click.option("--to", default=None, help="email: where to send (addresses separated by commas).")
@click.option("--events", default=None, metavar="LIST",
              help=f"Comma-separated, some of {', '.join(NOTIFY_EVENTS)}; default: failure, killed, lost, "
                   "stalled, and success of long runs.")
@click.option("--filter", "name_filter", default=None, metavar="TEXT",
              help="Only runs whose name holds TEXT (or matches it, with * ? [).")
def notify_add(kind: str, name: str | None, sender: str | None, password_stdin: bool, events: str | None,
               name_filter: str | None, **options: Any) -> None:
    """Add a channel of KIND; the server checks its settings before keeping it (`hyperdash notify test`
    then shows whether its address answers)."""
    given = {key: value for key, value in {**options, "from": sender}.items() if value is not None}
    for key in given:
        if kind not in _NOTIFY_SETTINGS[key]:
            raise UserError(f"--{key.replace('_', '-')} is not a setting of {kind} channels")
    if password_stdin:
        if kind != "email":
            raise UserError("--password-stdin is for email channels")
        given["password"] = sys.stdin.readline().rstrip("\n")
    new_secret = kind == "webhook" and "secret" not in given
    if new_secret:
        import secrets

        given["secret"] = "whsec_" + secrets.token_urlsafe(32)
    body = {"kind": kind, "name": name, "settings": given, "events": _notify_events(events), "name_filter": name_filter}
    with user_errors():
        added = _notify_session().request("POST", "/notify/channels", json=body)
    click.echo(f"Added {kind} channel {added['id']} ({added['name']}).")
    if new_secret:
        click.echo(f"Signing secret (shown only now; your receiver checks X-Hyperdash-Signature with it): "
                   f"{given['secret']}")
    click.echo(f"(`hyperdash notify test {added['id']}` sends it a test notification: whether its address "
               "answers shows only when something is sent)", err=True)


@notify.command("list")
def notify_list() -> None:
    """List your channels, their events and how their last delivery went."""
    with user_errors():
        found = _notify_session().request("GET", "/notify/channels")["channels"]
    if not found:
        click.echo("No notification channels: add one with `hyperdash notify add KIND`.")
        return
    rows = []
    for c in found:
        last = c.get("last_result") or {}
        target = next((", ".join(map(str, v)) if isinstance(v, list) else str(v)
                       for k, v in c["settings"].items() if k in ("url", "endpoint", "to", "chat_id")), "")
        rows.append((str(c["id"]), c["kind"], clip(c["name"], 24), clip(target, 48),
                     ",".join(c["events"]) if c["events"] is not None else "default", c["name_filter"] or "*",
                     "yes" if c["enabled"] else "no",
                     clip(f"{last.get('outcome')}: {last.get('detail')}" if last else "-", 60)))
    print_table(("ID", "KIND", "NAME", "TO", "EVENTS", "RUNS", "ON", "LAST RESULT"), rows)


@notify.command("edit")
@click.argument("channel_id", type=click.IntRange(min=1))
@click.option("--name", default=None, help="A new name.")
@click.option("--events", default=None, metavar="LIST", help="Comma-separated events, or default.")
@click.option("--filter", "name_filter", default=None, metavar="TEXT", help="A run-name filter; '' for all runs.")
@click.option("--enable/--disable", "enabled", default=None, help="Turn the channel on or off.")
def notify_edit(channel_id: int, name: str | None, events: str | None, name_filter: str | None,
                enabled: bool | None) -> None:
    """Change channel CHANNEL_ID's name, events, run filter, or turn it on or off."""
    if name is None and events is None and name_filter is None and enabled is None:
        raise UserError("nothing to change: give --name, --events, --filter, --enable or --disable")
    body: dict[str, Any] = {"name": name, "enabled": enabled}
    if events is not None:
        body["events"] = _notify_events(events)
    if name_filter is not None:
        body["name_filter"] = name_filter or None
    with user_errors():
        _notify_session().request("PATCH", f"/notify/channels/{channel_id}", json=body)
    click.echo(f"Changed channel {channel_id}.")


NOTIFY_TEST_TIMEOUT = 30.0


@notify.command("test")
@click.argument("channel_id", type=click.IntRange(min=1))
def notify_test(channel_id: int) -> None:
    """Send a test notification to CHANNEL_ID now and print the receiver's answer."""
    with user_errors():
        # (the server waits for the receiver up to its delivery timeouts, 5 s to connect and
        # 10 s to answer: the answer it then gives is the one to print, not a timeout of ours)
        result = _notify_session().request("POST", f"/notify/channels/{channel_id}/test", timeout=NOTIFY_TEST_TIMEOUT)
    detail = result.get("detail") or "no answer"
    if result["outcome"] != "delivered":
        raise UserError(f"not delivered ({result['outcome']}): {detail}")
    click.echo(f"Delivered: {detail}")


@notify.command("remove")
@click.argument("channel_id", type=click.IntRange(min=1))
def notify_remove(channel_id: int) -> None:
    """Remove channel CHANNEL_ID and what is queued for it."""
    with user_errors():
        _notify_session().request("DELETE", f"/notify/channels/{channel_id}")
    click.echo(f"Removed channel {channel_id}.")


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
@_stall_after_option(_RUN_STALL_HELP.format(what="the command writes"))
@click.option(
    "--system-metrics/--no-system-metrics",
    default=None,
    help="Record the command's CPU and memory, and the machine's CPU, memory, disk, network and "
    "GPUs, as the run's System metrics. Default: on, unless HYPERDASH_SYSTEM_METRICS=0.",
)
@click.option(
    "--system-metrics-interval",
    type=_seconds(min=0.1),
    default=None,
    metavar="SECONDS",
    help="Seconds between two samples of the system metrics (default 10, or "
    "HYPERDASH_SYSTEM_METRICS_INTERVAL).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(name: str, exit_timeout: float | None, merge_streams: bool | None, stall_after: float | None,
        system_metrics: bool | None, system_metrics_interval: float | None, command: tuple[str, ...]) -> None:
    """Run COMMAND (no shell in between) and monitor its output and exit status.

    \b
    hyperdash run -n "resnet50" python train.py --epochs 90
    hyperdash run -n "nightly" -- ./build.sh --release
    hyperdash run -n "resnet50" --stall-after 10m python train.py
    """
    from . import child

    if command[0].startswith("-"):  # (no program is named so: an option of ours, misspelt)
        import difflib

        ctx = click.get_current_context()
        options = [name for param in ctx.command.params for name in (*param.opts, *param.secondary_opts)]
        raise click.NoSuchOption(command[0], possibilities=difflib.get_close_matches(command[0], options), ctx=ctx)
    shown = _warn_about_settings()
    try:
        exit_code = child.monitor_command(
            name, list(command), exit_timeout=exit_timeout, quiet_config_errors=shown,
            merge_streams=merge_streams, stall_after=stall_after, system_metrics=system_metrics,
            system_metrics_interval=system_metrics_interval,
        )
    except child.CommandError as exc:
        raise UserError(str(exc), exit_code=exc.exit_code) from None
    sys.exit(exit_code)


@cli.command()
@_name_option
@_exit_timeout_option
@_stall_after_option(_RUN_STALL_HELP.format(what="standard input brings"))
def pipe(name: str, exit_timeout: float | None, stall_after: float | None) -> None:
    """Monitor standard input as a run and pass it through to standard output.

    \b
    python train.py 2>&1 | hyperdash pipe -n "resnet50"
    python train.py 2>&1 | hyperdash pipe -n "resnet50" --stall-after 10m
    """
    from . import child

    shown = _warn_about_settings()
    sys.exit(child.monitor_stdin(name, exit_timeout=exit_timeout, quiet_config_errors=shown,
                                 stall_after=stall_after))


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
        # (bars only for a person at a terminal: elsewhere they would be a stray line a run)
        summary = uploader.upload_pending(on_progress=progress.update if sys.stderr.isatty() else None,
                                          run_uuid=run_uuid, server=server_url)
    waiting = {run.uuid: run for run in _waiting_runs()}
    done = set(summary.uploaded) | set(summary.failed)
    # Spools that a live process holds (a running job, the background uploader) are skipped.
    busy = set(summary.busy) | {run for run in waiting if run not in done}
    if run_uuid is not None:
        busy &= {run_uuid}
    if not (summary.uploaded or summary.failed or busy or summary.deleted):
        click.echo("Nothing to upload.")
    for run in summary.deleted:
        click.echo(f"Dropped run {_run_label(run, waiting)}: it was deleted on the server.")
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


@cli.group(invoke_without_command=True)
@click.option("-n", "--name", default=None, help="Only runs with this name.")
@click.option("-q", "--search", default=None, metavar="TEXT",
              help="Only runs whose name holds TEXT, in any case.")
@click.option("--status", type=click.Choice(STATUS_FILTERS), default=None,
              help="Only runs in this state; attention: failure, killed, lost or stalled.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--archived", is_flag=True, help="List the archived runs (left out otherwise).")
@click.pass_context
def runs(ctx: click.Context, name: str | None, search: str | None, status: str | None, limit: int,
         archived: bool) -> None:
    """List your recent runs, newest first, with status and duration; or delete, archive or
    share one (see the commands below)."""
    from . import account

    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        found = account.list_runs(account.Session.from_settings(), name=name, search=search, status=status,
                                  limit=limit, archived="only" if archived else "no")
    if not found:
        if name or search or status:
            click.echo("No archived runs match." if archived else "No runs match.")
        else:
            click.echo("No archived runs." if archived else "No runs yet.")
        return
    print_table(
        ("RUN", "NAME", "STATUS", "STARTED", "DURATION"),
        [
            (r["uuid"][:8], clip(r.get("name") or "", 40), status_text(r), when(r.get("started_at")),
             # (a lost run's time runs to the last word from it)
             duration(r.get("started_at"), r.get("ended_at") or (r.get("last_seen_at") if r.get("status") == LOST
                                                                else None)))
            for r in found
        ],
    )


def _one_run(session: Any, run_ref: str) -> dict[str, Any]:
    """The run RUN names (an id, the start of one, or a name: its newest run), or a UserError."""
    from . import account

    if not run_ref.strip():
        raise UserError("name a run: its id, the start of one, or its name (see `hyperdash runs`)")
    found = account.find_run(session, run_ref)
    if found is None:
        raise UserError(f"no run matches {run_ref!r}: see `hyperdash runs`")
    return found


def _confirm(question: str, yes: bool) -> None:
    """Ask before deleting (unless --yes); without a terminal to ask on, refuse."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"{question} Nothing was deleted: add --yes to delete without being asked")
    if not click.confirm(question, default=False):
        raise UserError("nothing was deleted", exit_code=1)


@runs.command("delete")
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.option("-n", "--name", default=None, help="Delete every run with this name instead.")
@click.option("--force", is_flag=True, help="Delete runs that are still running (what they send next is dropped).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
def runs_delete(run_ref: str | None, name: str | None, force: bool, yes: bool) -> None:
    """Delete RUN (an id, the start of one, or a name: its newest run), or with --name every
    run of a name: their logs, metrics and params, for good."""
    from . import account, errors

    if (run_ref is None) == (name is None):
        raise click.UsageError("name a RUN, or give --name NAME (not both)")
    with user_errors():
        session = account.Session.from_settings()
        if run_ref is not None:
            found = _one_run(session, run_ref)
            _confirm(f"Delete run {found['uuid'][:8]} ({found.get('name') or 'unnamed'}, {status_text(found)})?", yes)
        else:
            _confirm(f"Delete every run named {name!r}?", yes)
        try:
            deleted = account.delete_runs(session, run_uuid=found["uuid"] if run_ref is not None else None,
                                          name=name, force=force)
        except errors.APIError as exc:
            if exc.code != "run_running":
                raise
            raise UserError(f"{exc.message.split(': deleting')[0]}: deleting a run that is being sent to drops "
                            "what it sends next; add --force to delete it all the same (the job goes on)") from None
    click.echo(f"Deleted {len(deleted)} run{'s' if len(deleted) != 1 else ''}: "
               + ", ".join(uuid[:8] for uuid in deleted))


def _archive(run_ref: str, archived: bool) -> None:
    from . import account

    with user_errors():
        session = account.Session.from_settings()
        found = _one_run(session, run_ref)
        account.set_archived(session, found["uuid"], archived)
    click.echo(f"{'Archived' if archived else 'Unarchived'} run {found['uuid'][:8]} ({found.get('name') or 'unnamed'})"
               + (": `hyperdash runs --archived` lists it" if archived else ""))


@runs.command("archive")
@click.argument("run_ref", metavar="RUN")
def runs_archive(run_ref: str) -> None:
    """Archive RUN: out of the default lists, kept whole (`hyperdash runs --archived` lists it)."""
    _archive(run_ref, True)


@runs.command("unarchive")
@click.argument("run_ref", metavar="RUN")
def runs_unarchive(run_ref: str) -> None:
    """Bring an archived RUN back to the default lists."""
    _archive(run_ref, False)


@runs.command("share")
@click.argument("run_ref", metavar="RUN")
@click.option("--list", "list_only", is_flag=True, help="List the run's live links instead.")
@click.option("--revoke", type=click.IntRange(min=1), default=None, metavar="ID", help="Revoke the link ID.")
def runs_share(run_ref: str, list_only: bool, revoke: int | None) -> None:
    """Print a new read-only link to RUN that works without an account (its log, charts,
    params and status, live); --list the live ones, --revoke one."""
    from . import account

    with user_errors():
        session = account.Session.from_settings()
        found = _one_run(session, run_ref)
        if revoke is not None:
            account.revoke_share(session, found["uuid"], revoke)
            click.echo(f"Revoked link {revoke}: it stops working at once.")
        elif list_only:
            shares = account.list_shares(session, found["uuid"])
            if not shares:
                click.echo("No live links.")
            for share in shares:
                click.echo(f"{share['id']}  made {when(share['created_at'])}")
        else:
            made = account.create_share(session, found["uuid"])
            click.echo(made["url"])
            click.echo(f"(anyone with it can watch this run; `hyperdash runs share {found['uuid'][:8]} "
                       f"--revoke {made['id']}` ends it)", err=True)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
def logs(run_ref: str, follow: bool) -> None:
    """Print the log of RUN: a run id, the start of one, or a run name (its newest run)."""
    from . import account

    with user_errors():
        session = account.Session.from_settings()
        found = _arriving_run(session, run_ref) if follow else _one_run(session, run_ref)
        answered = _answered if follow else _at_once
        run_uuid, after = found["uuid"], 0
        while True:
            lines = answered(account.run_logs, session, run_uuid, after=after)
            for line in lines:
                print_line(line)
                after = line["seq"]
            if lines:
                continue
            if not follow or found.get("status") in FINAL_STATUSES:
                break
            if found.get("status") == LOST:
                click.echo(f"hyperdash: run {found['uuid'][:8]} is lost: nothing was heard from it since "
                           f"{when(found.get('last_seen_at'))}. Should it come back, `hyperdash logs -f` "
                           "follows it again.", err=True)
                break
            time.sleep(0.5)
            found = answered(account.get_run, session, run_uuid)
            if found.get("status") in FINAL_STATUSES:
                # One more page: lines that arrived before the run ended.
                for line in answered(account.run_logs, session, run_uuid, after=after):
                    print_line(line)
                    after = line["seq"]
                break


# How long `logs -f` waits for a run named by its id to reach the server (a job that has just
# started says where to follow it a moment before its first events arrive), in seconds.
ARRIVAL_WAIT = 10.0
# The longest pause between two tries of a server that stopped answering a follower.
RECONNECT_MAX_PAUSE = 10.0


def _arriving_run(session: Any, run_ref: str) -> dict[str, Any]:
    """The run RUN names (see :func:`_one_run`); one named by its id or the start of one that
    is not on the server yet is waited for, :data:`ARRIVAL_WAIT` at most."""
    from . import account

    if len(run_ref.strip()) < 8 or not account.looks_like_run_id(run_ref):
        return _one_run(session, run_ref)
    deadline = time.monotonic() + ARRIVAL_WAIT
    while (found := account.find_run(session, run_ref)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if found is None:
        raise UserError(f"no run matches {run_ref!r} (waited {ARRIVAL_WAIT:g} s for it to arrive): "
                        "see `hyperdash runs`")
    return found


def _at_once(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return call(*args, **kwargs)


def _answered(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, tried again while the server does not answer (restarted,
    say): a follower waits for it, saying so once, as ``tail -F`` waits for its file. Ctrl-C
    ends the wait."""
    from .errors import ServerError, ServerUnreachable

    pause, said = 0.5, False
    while True:
        try:
            result = call(*args, **kwargs)
        except (ServerUnreachable, ServerError) as exc:
            if not said:
                click.echo(f"hyperdash: {exc}; following on once it answers (Ctrl-C to stop)", err=True)
                said = True
            time.sleep(pause)
            pause = min(pause * 2, RECONNECT_MAX_PAUSE)
            continue
        if said:
            click.echo("hyperdash: the server answers again", err=True)
        return result


@cli.command()
@click.argument("run_ref", metavar="RUN")
def stop(run_ref: str) -> None:
    """Stop RUN (a run id, the start of one, or a run name: its newest run), as the Stop button
    of its page does: the job hears of it within a few seconds and ends user_canceled."""
    from . import account

    with user_errors():
        session = account.Session.from_settings()
        stopped = account.stop_run(session, _one_run(session, run_ref)["uuid"])
    name = f" ({clip(stopped['name'], 40)})" if stopped.get("name") else ""
    click.echo(f"Asked run {stopped['uuid'][:8]}{name} to stop: the job stops when it next hears from the "
               "server, within a few seconds (a command run by `hyperdash run` gets SIGINT, then SIGTERM, "
               "then SIGKILL if it goes on).")


@cli.command("open")
@click.argument("run_ref", metavar="RUN")
def open_run(run_ref: str) -> None:
    """Open the dashboard page of RUN (a run id, the start of one, or a run name) in a
    browser; where there is no browser, print its address."""
    from . import account, config
    from .links import run_page_url

    with user_errors():
        found = _one_run(account.Session.from_settings(), run_ref)
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


# --- tensorboard -----------------------------------------------------------------------------


def _check_optional_run_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else _check_run_name(ctx, param, value)


@cli.command()
@click.option("--logdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="TensorBoard's log folder: each folder under it that holds event files is a run.")
@click.option("-n", "--name", default=None, callback=_check_optional_run_name,
              help="The runs' name (default: the log folder's name).")
@click.option("--backfill", is_flag=True, help="Also send the scalars already in the event files.")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Keep sending scalars as they are written, until Ctrl-C; --no-follow sends "
              "what is there (with --backfill) and ends.")
@click.option("--interval", type=_seconds(min=0.1), default=2.0, show_default=True, metavar="SECONDS",
              help="How often to look for new scalars.")
def tensorboard(logdir: Path, name: str | None, backfill: bool, follow: bool, interval: float) -> None:
    """Send TensorBoard's scalars to Hyperdash, with their steps, as they are written.

    \b
    hyperdash tensorboard --logdir runs/ -n "resnet sweep" --backfill
    """
    import signal
    import threading

    from .tensorboard import Follower

    if not follow and not backfill:
        raise UserError("--no-follow sends only what is already there: add --backfill")
    _warn_about_settings()
    try:
        follower = Follower(logdir, name, backfill=backfill, say=lambda line: click.echo(line, err=True))
    except (ImportError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    stop = threading.Event()
    if follow:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda *_: stop.set())
        click.echo(f"hyperdash: following {follower.logdir} (Ctrl-C stops)", err=True)
    follower.send(stop if follow else None, interval)


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
