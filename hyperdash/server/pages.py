"""The web dashboard: sign-in and sign-out, the runs page, a run's page, the notification
settings page, and their static files.

Pages are Jinja2 templates (autoescaped) that small JavaScript modules under ``static/js/`` bring
to life through the JSON API and its server-sent events. A browser proves who it is with the
``hyperdash_session`` cookie (HttpOnly, SameSite=Lax). Every form that changes state carries a
CSRF token: the session's own once signed in, and before that (the sign-in form) a random token
that must match a cookie of its own. Each page forbids inline scripts and anything from another
site through its Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from http import HTTPStatus
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.staticfiles import StaticFiles

from .. import events as ev
from .auth import MAX_EMAIL_CHARS, SESSION_COOKIE, User, WrongCredentials, cookie_settings
from .errors import ApiError, NotFound, Throttled
from .queries import find_run, log_lines, run_detail
from .run_refs import UUID_CHARS, AmbiguousRun, full_run_uuid, is_uuid_prefix
from .text import is_clean

__all__ = ["router", "error_page", "CONTENT_SECURITY_POLICY", "LOGIN_CSRF_COOKIE", "STATIC_DIR", "TEMPLATE_DIR"]

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATE_DIR = HERE / "templates"

LOGIN_CSRF_COOKIE = "hyperdash_login_csrf"
LOGIN_CSRF_FIELD = "csrf_token"

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    # ansi_up colours bold, 256-colour and true-colour text with style attributes (never <style>).
    "style-src-attr 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "manifest-src 'self'",
    "worker-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
# Log lines a run's page comes with: its JavaScript shows them at once and fetches older ones
# as the reader scrolls back.
FIRST_LINES = 200
STATUS_CHOICES = (
    (ev.ATTENTION, "Needs attention"), (ev.RUNNING, "Running"), (ev.SUCCESS, "Success"), (ev.FAILURE, "Failure"),
    (ev.USER_CANCELED, "Canceled"), (ev.KILLED, "Killed"), (ev.LOST, "Lost"),
)

router = APIRouter(include_in_schema=False)


# --- static files -------------------------------------------------------------------------------
_static_files = StaticFiles(directory=STATIC_DIR)
_fingerprints: dict[str, tuple[float, str]] = {}


def static_url(path: str) -> str:
    """``/static/<path>?v=<content hash>``: the URL changes when the file does."""
    file = STATIC_DIR / path
    mtime = file.stat().st_mtime
    cached = _fingerprints.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, hashlib.sha256(file.read_bytes()).hexdigest()[:12])
        _fingerprints[path] = cached
    return f"/static/{path}?v={cached[1]}"


@router.get("/static/{path:path}")
async def static(path: str, request: Request) -> Response:
    """A file under ``static/``. Fingerprinted URLs are cached for good, others revalidated."""
    response = await _static_files.get_response(path, request.scope)
    immutable = "v" in request.query_params and response.status_code == 200
    response.headers["cache-control"] = "public, max-age=31536000, immutable" if immutable else "no-cache"
    response.headers["x-content-type-options"] = "nosniff"
    return response


@router.get("/manifest.webmanifest")
def manifest() -> Response:
    return FileResponse(STATIC_DIR / "manifest.webmanifest", media_type="application/manifest+json",
                        headers={"cache-control": "no-cache"})


@router.get("/sw.js")
def service_worker() -> Response:
    # Served from the root so that its scope is the whole dashboard.
    return FileResponse(STATIC_DIR / "sw.js", media_type="text/javascript",
                        headers={"cache-control": "no-cache"})


@router.get("/favicon.ico")
def favicon() -> Response:
    return FileResponse(STATIC_DIR / "icons" / "icon-32.png", media_type="image/png")


# --- templates ----------------------------------------------------------------------------------
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True, undefined=jinja2.StrictUndefined,
)
_env.globals["static"] = static_url
templates = Jinja2Templates(env=_env)


def render(request: Request, template: str, status_code: int = 200, **context) -> Response:
    context.setdefault("user", None)
    context.setdefault("csrf_token", None)
    return templates.TemplateResponse(request, template, context, status_code=status_code,
                                      headers=PAGE_HEADERS)


def error_page(request: Request, error: ApiError) -> Response:
    """A page that says what went wrong (``error``'s status, headers and message), for a person
    in a browser."""
    message = error.message[:1].upper() + error.message[1:] + "."
    response = render(request, "not_found.html", status_code=error.status,
                      title=HTTPStatus(error.status).phrase, message=message)
    response.headers.update(error.headers or {})
    return response


# --- sessions -----------------------------------------------------------------------------------
def _session(request: Request) -> tuple[User, str] | None:
    """The signed-in user and the session's CSRF token, from the session cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    auth = request.app.state.auth
    user = auth.user_for_session(token)
    csrf = auth.csrf_for_session(token) if user else None
    return (user, csrf) if user and csrf else None


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, never another site."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = "" if target == "/" else "?" + urlencode({"next": target})
    return RedirectResponse("/login" + query, status_code=303)


def _signed_in(request: Request, user: User, target: str) -> Response:
    session_token, _csrf = request.app.state.auth.create_browser_session(user.id)
    response = RedirectResponse(_safe_next(target), status_code=303)
    response.set_cookie(SESSION_COOKIE, session_token, **cookie_settings(secure=request.url.scheme == "https"))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _same_origin(request: Request) -> bool:
    """False when the browser says that the request comes from another site."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _forbidden(request: Request, message: str) -> Response:
    return render(request, "not_found.html", status_code=403, title="Request refused", message=message)


def _login_form(request: Request, *, status_code: int = 200, error: str | None = None,
                email: str = "", target: str = "/") -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    # (what was typed is shown again, but no more than an email address can be)
    response = render(request, "login.html", status_code=status_code, error=error, email=email[:MAX_EMAIL_CHARS],
                      next=_safe_next(target), login_csrf=token)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login",
                        secure=request.url.scheme == "https", max_age=3600)
    return response


# --- sign in and out ----------------------------------------------------------------------------
@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    if _session(request):
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_form(request, target=next)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    email = str(form.get("email") or "").strip()
    password = str(form.get("password") or "")
    target = str(form.get("next") or "/")
    sent = str(form.get(LOGIN_CSRF_FIELD) or "")
    expected = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not _same_origin(request) or not expected or not hmac.compare_digest(sent, expected):
        # A fresh form (with a fresh cookie) lets a person whose cookie expired try again.
        response = _login_form(request, status_code=403, email=email, target=target,
                               error="This form has expired. Please sign in again.")
        return response
    if not email or not password:
        return _login_form(request, status_code=400, email=email, target=target,
                           error="Enter your email and password.")
    auth = request.app.state.auth
    client = request.client.host if request.client else ""
    try:
        user = auth.authenticate(email, password, client)
    except WrongCredentials:
        return _login_form(request, status_code=401, email=email, target=target,
                           error="Wrong email or password.")
    except Throttled as exc:
        response = _login_form(request, status_code=429, email=email, target=target,
                               error=f"Too many wrong passwords. Try again in {exc.retry_after} s.")
        response.headers.update(exc.headers or {})  # Retry-After, as the API says it
        return response
    return _signed_in(request, user, target)


@router.get("/auth/token")
def redeem_link(request: Request, token: str = "") -> Response:
    """The one-time sign-in link that ``hyperdash server`` prints in local mode."""
    user = request.app.state.auth.redeem_login_token(token) if token else None
    if user is None:
        return _login_form(request, status_code=400,
                           error="This sign-in link has expired or was used already.")
    return _signed_in(request, user, "/")


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = _session(request)
    if session is not None:
        form = await request.form()
        sent = str(form.get(LOGIN_CSRF_FIELD) or "")
        if not _same_origin(request) or not hmac.compare_digest(sent, session[1]):
            return _forbidden(request, "The sign-out form was not sent from this site.")
        request.app.state.auth.end_browser_session(request.cookies[SESSION_COOKIE])
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- pages --------------------------------------------------------------------------------------
@router.get("/")
def runs_page(request: Request, name: str = "", q: str = "", status: str = "", archived: str = "") -> Response:
    """The runs, filtered by a whole ``name`` (a group's link) or by ``q``, a part of it; the
    archived ones alone with ``archived=only``."""
    session = _session(request)
    if session is None:
        return _to_login(request)
    user, csrf = session
    return render(request, "runs.html", user=user, csrf_token=csrf, name=name[: ev.MAX_NAME_CHARS],
                  q=q[: ev.MAX_NAME_CHARS], status=status if status in ev.STATUS_FILTERS else "",
                  statuses=STATUS_CHOICES, archived=archived == "only")


def _account_page(request: Request, template: str) -> Response:
    """A page of the signed-in account whose script reads what it shows from the API (else the
    sign-in page)."""
    session = _session(request)
    if session is None:
        return _to_login(request)
    user, csrf = session
    return render(request, template, user=user, csrf_token=csrf)


@router.get("/settings")
def settings_page(request: Request) -> Response:
    """The account's notification channels (static/js/settings.js does the work)."""
    return _account_page(request, "settings.html")


@router.get("/compare")
def compare_page(request: Request, name: str = "") -> Response:
    """The runs of one name side by side: a table to sort, filter and export, and their metrics
    overlaid."""
    session = _session(request)
    if session is None:
        return _to_login(request)
    user, csrf = session
    if not name or len(name) > ev.MAX_NAME_CHARS or not is_clean(name):
        return render(request, "not_found.html", status_code=404, user=user, csrf_token=csrf,
                      title="Which runs?", message="Name the runs to compare: /compare?name=NAME.")
    return render(request, "compare.html", user=user, csrf_token=csrf, name=name)


# How many times (a second apart) a run page not found looks again for a run that has just started.
ARRIVAL_CHECKS = 10


@router.get("/runs/{run_uuid}")
def run_page(request: Request, run_uuid: str) -> Response:
    session = _session(request)
    if session is None:
        return _to_login(request)
    user, csrf = session
    try:
        if not is_clean(run_uuid):  # no run has such a uuid (and PostgreSQL cannot even look)
            raise NotFound(f"no run {run_uuid!r}")
        with request.app.state.store.read() as conn:
            full_uuid = full_run_uuid(conn, user.id, run_uuid)
            if full_uuid != run_uuid:  # the start of a run's uuid: go to the run's own address
                query = f"?{request.url.query}" if request.url.query else ""
                return RedirectResponse(f"/runs/{quote(full_uuid, safe='')}{query}", status_code=307)
            row = find_run(conn, user.id, run_uuid)
            run_id = row.id
            run = run_detail(conn, user.id, run_uuid)
            # Read after the run, so these lines reach at least its last_seq, from where the
            # page's event stream goes on.
            tail = log_lines(conn, run_id, tail=FIRST_LINES)
    except NotFound:
        # The address a job prints as it starts may be opened before its first word reaches
        # the server (a second or so): for a run's id, the page looks again for a while.
        waited = request.query_params.get("waited", "0")
        # (ASCII digits, and few: int() refuses "²" and numbers of thousands of digits)
        count = int(waited) if waited.isascii() and waited.isdigit() and len(waited) <= 3 else ARRIVAL_CHECKS
        looks = count + 1 if count < ARRIVAL_CHECKS else None
        if looks is not None and (is_uuid_prefix(run_uuid.lower()) or len(run_uuid) == UUID_CHARS):
            return render(request, "not_found.html", status_code=404, user=user, csrf_token=csrf,
                          title="Waiting for this run",
                          message="It has not reached the server yet: a run that has just started arrives "
                                  "within a few seconds. This page looks again every second.",
                          refresh_to=f"/runs/{quote(run_uuid, safe='')}?waited={looks}")
        return render(request, "not_found.html", status_code=404, user=user, csrf_token=csrf,
                      title="Run not found", message="There is no such run in your account.")
    except AmbiguousRun as exc:
        return render(request, "not_found.html", status_code=409, user=user, csrf_token=csrf,
                      title="Which run?", message=exc.message)
    page_data = {"run": run, "tail": tail, "tail_limit": FIRST_LINES}
    return render(request, "run.html", user=user, csrf_token=csrf, run=run, run_uuid=run["uuid"],
                  archived=row.archived_at is not None,
                  download_url=f"/api/v1/runs/{quote(run['uuid'], safe='')}/logs.txt", page_data=page_data)


@router.get("/storage")
def storage_page(request: Request) -> Response:
    """How much each name's runs take, deleting a name's runs, and how long runs are kept."""
    return _account_page(request, "storage.html")
