"""What a server's admin does from the shell: ``hyperdash server adduser``.

On a server started with ``--no-signup`` nobody can make an account over HTTP; the admin makes
each one on the server's database (the command asks for the password, or reads it from standard
input), and its owner then signs in with ``hyperdash login`` or on the dashboard.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from .auth import Auth
from .errors import ApiError
from .store import Store

__all__ = ["add_user", "AdminError"]


class AdminError(Exception):
    """A one-line reason why the admin's command could not be done."""


def add_user(db_url: str | None, email: str, password: str) -> str:
    """Make an account with a password on the store at ``db_url``; its email, as stored."""
    try:
        store = Store(db_url)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise AdminError(f"cannot open the database: {reason}") from None
    except (OSError, ValueError) as exc:
        raise AdminError(str(exc)) from None
    try:
        return Auth(store).create_user(email, password).email
    except ApiError as exc:
        raise AdminError(exc.message) from None
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise AdminError(f"cannot write to the database: {reason}") from None
    finally:
        store.close()
