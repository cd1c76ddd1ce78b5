"""Starting the server: ``serve`` (the ``hyperdash server`` command) and ``ServerThread``.

On a loopback address the server runs in local mode: the first start on an empty store creates
a local account and, where ``$HYPERDASH_HOME/hyperdash.json`` holds no ``api_key`` yet, writes
that account's key and the server's address there. Every start on loopback then prints a
one-time sign-in link for the dashboard, valid for 15 minutes; it revokes the links printed
before. The local account has no password, so a server on any other address refuses its sign-in
links and browser sessions (its API keys keep working).

``workers=N`` (``--workers N``) serves one address with N processes, on PostgreSQL only: the
first process binds the socket, prepares the database (and local mode), then starts N worker
processes that accept on that socket, each a whole server (dashboard and API) on the shared
database (see :mod:`hyperdash.server.relay`), and restarts one that dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine.url import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from ..errors import ConfigError
from ..settings import home_dir, load_settings, save_settings, settings_path
from .app import create_app, use_public_url
from .auth import LOCAL_EMAIL
from .dialect import checked_url
from .errors import Conflict
from .store import default_db_url

__all__ = ["serve", "ServerThread", "is_loopback", "prepare_local_mode", "run_worker"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _write_client_config(api_key: str, server_url: str) -> bool:
    """Merge the key and address into the settings file unless it holds a key already."""
    if load_settings().get("api_key"):
        return False
    save_settings({"api_key": api_key, "server": server_url})
    return True


def prepare_local_mode(app: FastAPI, url: str) -> str | None:
    """Local mode on ``app``: the local account (made on an empty store) and a sign-in link."""
    auth = app.state.auth
    auth.local_mode = True
    local = auth.local_user()
    made = None
    if local is None and auth.user_count() == 0:
        try:
            local = made = auth.create_user(LOCAL_EMAIL, None, is_local=True)
        except Conflict:  # another process on the same database made it at the same moment
            local = auth.local_user()
    if made is not None:
        key = auth.create_api_key(made.id, "local")
        try:
            written = _write_client_config(key["api_key"], url)
        except ConfigError as exc:  # a settings file that is not ours to overwrite
            print(f"hyperdash: {exc}; left it alone", file=sys.stderr)
        except OSError as exc:
            print(f"hyperdash: could not write the local account's key to {home_dir()}: {exc}",
                  file=sys.stderr)
        else:
            if written:
                print(f"Wrote the local account's API key to {settings_path()}", flush=True)
    if local is None:
        return None
    return f"{url}/auth/token?token={auth.create_login_token(local.id)}"


def _shown_url(db_url: str | None) -> str:
    """The database URL without its password."""
    try:
        return make_url(db_url or default_db_url()).render_as_string(hide_password=True)
    except Exception:  # not even a URL: show it as given
        return str(db_url)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn, ending the live event streams first when asked to stop (they never end alone)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI):
        super().__init__(config)
        self.hyperdash_app = app

    def handle_exit(self, sig, frame) -> None:
        self.hyperdash_app.state.hub.close()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self):
        # A stop by signal is a clean exit (status 0), not a death by that signal.
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def _server(app: FastAPI, forwarded_allow_ips: str | None = None) -> _Server:
    # uvicorn replaces the peer's address by X-Forwarded-For's only from the proxies it trusts.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5, server_header=False, proxy_headers=True,
                            forwarded_allow_ips=forwarded_allow_ips)
    return _Server(config, app)


def _database_error(exc: SQLAlchemyError, db_url: str | None, doing: str) -> SystemExit:
    """One line for a database that fails: what we were doing, where, and why."""
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return SystemExit(f"hyperdash server: cannot {doing} the database {_shown_url(db_url)}: {reason}")


def serve(host: str = "127.0.0.1", port: int = 4680, db_url: str | None = None,
          lost_timeout: float | None = None, *, signup: bool = True,
          forwarded_allow_ips: str | None = None, public_url: str | None = None,
          stall_after: float | None = None, keep_days: int | None = None, workers: int = 1) -> None:
    """Serve until Ctrl-C or SIGTERM; every acknowledged batch is committed before it returns.

    ``signup=False`` closes sign-up (``--no-signup``); ``forwarded_allow_ips`` names the proxies
    whose ``X-Forwarded-For`` is believed (uvicorn's option: addresses or networks, comma
    separated, ``*`` for any; None: ``$FORWARDED_ALLOW_IPS``, else 127.0.0.1 only);
    ``public_url`` is the dashboard's address in notifications' links (None:
    ``$HYPERDASH_PUBLIC_URL``, else the address it listens on) and in shared links (None: the
    address a request came to); ``stall_after`` is the default stall window in seconds (None:
    ``$HYPERDASH_STALL_AFTER``, else 30 minutes; 0: off); ``keep_days``: finished runs older than
    this go (``--keep-days``); ``workers`` is the number of server processes (more than one
    needs PostgreSQL)."""
    if workers < 1:
        raise SystemExit("hyperdash server: --workers must be at least 1")
    try:
        checked = checked_url(db_url or default_db_url())
    except ValueError as exc:
        raise SystemExit(f"hyperdash server: {exc}") from None
    if workers > 1 and checked.get_backend_name() != "postgresql":
        raise SystemExit(f"hyperdash server: --workers {workers} needs PostgreSQL (--db postgresql://...): "
                         "a SQLite file has one writing process; run one process on SQLite")
    try:
        held = hold_sqlite_store(checked)
    except ValueError as exc:
        raise SystemExit(f"hyperdash server: {exc}") from None
    try:
        _serve(host, port, db_url, lost_timeout, signup=signup, forwarded_allow_ips=forwarded_allow_ips,
               public_url=public_url, stall_after=stall_after, keep_days=keep_days, workers=workers)
    finally:
        if held is not None:
            os.close(held)


def hold_sqlite_store(url: URL) -> int | None:
    """A lock on a SQLite store (``url`` from :func:`~hyperdash.server.dialect.checked_url`),
    held while this process serves it: the descriptor to close; None for PostgreSQL or a store
    in memory. A second server on the same file would number and cache the same runs beside
    this one, and lose lines: ValueError, one line, where another holds it (its pid is in the
    lock file)."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    import fcntl

    path = f"{os.path.realpath(database)}.server-lock"  # (one lock, whatever link names the file)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ValueError(f"cannot open {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise ValueError(f"another server (pid {holder or '?'}) serves {database} already: a SQLite file "
                         "takes one; stop it first, or use PostgreSQL for several") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _serve(host: str, port: int, db_url: str | None, lost_timeout: float | None, *, signup: bool,
           forwarded_allow_ips: str | None, public_url: str | None, stall_after: float | None,
           keep_days: int | None, workers: int) -> None:
    try:
        app = create_app(db_url, lost_timeout, stall_after=stall_after, keep_days=keep_days)
    except SQLAlchemyError as exc:
        raise _database_error(exc, db_url, "open") from None
    except (OSError, ValueError) as exc:
        raise SystemExit(f"hyperdash server: {exc}") from None
    try:
        sock = _bind(host, port)
    except OSError as exc:
        app.state.store.close()
        raise SystemExit(f"hyperdash server: {exc}") from None
    url = _url(host, sock.getsockname()[1])
    given = (public_url or os.environ.get("HYPERDASH_PUBLIC_URL", "").strip()).rstrip("/")
    public = given or url.rstrip("/")
    local_mode = is_loopback(host)
    if local_mode:
        try:
            link = prepare_local_mode(app, url)
        except SQLAlchemyError as exc:  # e.g. a read-only SQLite file
            sock.close()
            app.state.store.close()
            raise _database_error(exc, db_url, "write to") from None
        if link:
            print(f"Sign in to the dashboard: {link}", flush=True)
    store_url = app.state.store.url.render_as_string(hide_password=True)
    shown = f" with {workers} processes" if workers > 1 else ""
    print(f"Hyperdash server on {url}{shown} (store: {store_url})", flush=True)
    if workers > 1:
        app.state.store.close()  # (the database is prepared: the workers open their own)
        options = {"db_url": db_url, "lost_timeout": lost_timeout, "stall_after": stall_after, "keep_days": keep_days,
                   "signup": signup, "forwarded_allow_ips": forwarded_allow_ips, "public_url": public,
                   "link_url": given or None, "local_mode": local_mode}
        try:
            _supervise(sock, workers, options)
        finally:
            sock.close()
        print("Hyperdash server stopped", flush=True)
        return
    _configure(app, signup=signup, public_url=public, link_url=given or None, local_mode=local_mode)
    _run(app, sock, forwarded_allow_ips)
    print("Hyperdash server stopped", flush=True)


def _configure(app: FastAPI, *, signup: bool, public_url: str, link_url: str | None, local_mode: bool) -> None:
    """Settings of a served app that are not the store's: ``public_url`` for notifications'
    links, ``link_url`` for shared links (None: the address a request came to)."""
    app.state.public_url = link_url
    app.state.auth.signup_open = signup
    app.state.auth.local_mode = local_mode
    use_public_url(app, public_url)


def _run(app: FastAPI, sock: socket.socket, forwarded_allow_ips: str | None) -> None:
    """Serve ``app`` on ``sock`` until told to stop."""
    # A batch of events makes thousands of short-lived objects; with the default thresholds
    # the collector runs several times per batch and costs a third of ingest.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)
    server = _server(app, forwarded_allow_ips)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


#: The longest pause before a worker that keeps dying at once is started again (seconds).
WORKER_RESTART_MAX_PAUSE_S = 30.0
#: How often a worker looks whether its supervisor is still there (seconds).
WORKER_ORPHAN_CHECK_S = 1.0


def _supervise(sock: socket.socket, workers: int, options: dict) -> None:
    """Run ``workers`` worker processes on ``sock`` until SIGINT or SIGTERM, restarting any that
    dies; then stop them (each finishes its requests and commits what it acknowledged)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    argv = [sys.executable, "-c", "import sys; from hyperdash.server.main import run_worker; run_worker(sys.argv[1])",
            json.dumps({**options, "fd": sock.fileno(), "supervisor": os.getpid()})]

    def start() -> subprocess.Popen:
        return subprocess.Popen(argv, pass_fds=[sock.fileno()], stdin=subprocess.DEVNULL)

    procs: list[subprocess.Popen | None] = [start() for _ in range(workers)]
    born = [time.monotonic()] * workers
    pause = [0.0] * workers  # how long a slot waits before its next start
    due = [0.0] * workers  # when a slot whose worker exited starts another
    try:
        while not stop.wait(0.5):
            now = time.monotonic()
            for k, proc in enumerate(procs):
                if proc is None:
                    if now >= due[k]:
                        procs[k], born[k] = start(), now
                    continue
                if proc.poll() is None:
                    continue
                # One that dies at once (its database is out of reach, say) is started again
                # after a pause that doubles, up to half a minute; one that served a while, at once.
                pause[k] = min(WORKER_RESTART_MAX_PAUSE_S, max(1.0, pause[k] * 2)) if now - born[k] < 10 else 0.0
                when = f" in {pause[k]:g} s" if pause[k] else ""
                print(f"hyperdash server: worker process {proc.pid} exited ({proc.returncode}); "
                      f"starting another{when}", file=sys.stderr, flush=True)
                procs[k], due[k] = None, now + pause[k]
    finally:
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 30
        for proc in procs:
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_worker(spec: str) -> None:
    """One worker process of ``serve(workers=N)``: a whole server on the inherited socket
    (``spec``: the JSON of its options, ``fd`` the socket's descriptor)."""
    options = json.loads(spec)
    # (watched from the start: a supervisor killed while this one starts leaves it an orphan too)
    threading.Thread(target=_end_with_the_supervisor, args=(options["supervisor"],), name="hyperdash-supervisor-watch",
                     daemon=True).start()
    sock = socket.socket(fileno=options["fd"])
    try:
        app = create_app(options["db_url"], options["lost_timeout"], stall_after=options["stall_after"],
                         keep_days=options["keep_days"])
    except (SQLAlchemyError, OSError, ValueError) as exc:
        raise SystemExit(f"hyperdash server: worker process {os.getpid()}: {exc}") from None
    _configure(app, signup=options["signup"], public_url=options["public_url"], link_url=options["link_url"],
               local_mode=options["local_mode"])
    _run(app, sock, options["forwarded_allow_ips"])


def _end_with_the_supervisor(supervisor: int) -> None:
    """In a worker: once the supervisor is gone (killed outright, with no word to its workers),
    end as it would have ended this one, SIGTERM: served on, orphans would hold the address,
    and a new server could not take it."""
    while os.getppid() == supervisor:
        time.sleep(WORKER_ORPHAN_CHECK_S)
    os.kill(os.getpid(), signal.SIGTERM)


class ServerThread:
    """The server in this process, on a background thread.

    ``ServerThread(host="127.0.0.1", port=0, db_url=None, lost_timeout=None, local_mode=False,
    max_queued_bytes=None)``; ``port=0`` picks a free port; ``max_queued_bytes`` bounds the
    writer's queue (see :func:`~hyperdash.server.app.create_app`). ``start()`` returns once the
    server answers (and returns ``self``); ``url`` is its address, ``app`` the FastAPI app (``app.state.auth`` makes
    accounts: ``auth.create_user(email, password)``, ``auth.create_api_key(user.id, name)``);
    ``sign_in_link`` is set in local mode. ``stop()`` ends it with every acknowledged batch
    committed. Also a context manager.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, db_url: str | None = None,
                 lost_timeout: float | None = None, local_mode: bool = False,
                 max_queued_bytes: int | None = None):
        self.app = create_app(db_url, lost_timeout, max_queued_bytes=max_queued_bytes)
        try:
            self._sock = _bind(host, port)
        except OSError:
            self.app.state.store.close()
            raise
        self.url = _url(host, self._sock.getsockname()[1])
        self.sign_in_link = prepare_local_mode(self.app, self.url) if local_mode else None
        self._server = _server(self.app)
        self._thread = threading.Thread(target=self._run, name="hyperdash-server", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self, timeout: float = 30) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start: {self._error!r}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30) -> None:
        self.app.state.hub.close()
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()
        self.app.state.store.close()  # no-op when the app's shutdown closed it already

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
