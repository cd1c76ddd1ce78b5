"""The Hyperdash server: the HTTP API and the web dashboard (the ``server`` extra).

It imports nothing of the SDK but :mod:`hyperdash.events`, the schema the two share.

- ``main``: ``serve`` (the ``hyperdash server`` command), ``ServerThread``, local mode
- ``app``: the app factory, ``create_app(db_url, lost_timeout)``
- ``api``: the JSON API under ``/api/v1``; ``pages``: the dashboard's pages
- ``auth``: accounts, keys, tokens, browser sessions (see its docstring for page routes)
- ``ingest``: checking and storing envelopes; ``queries``: reads; ``views``: JSON shapes
- ``live``: fan-out of committed events to server-sent event streams
- ``store``: tables, migrations and the single writer thread
- ``errors``: the exception hierarchy and JSON error replies
"""

from importlib.metadata import PackageNotFoundError, version as _package_version

__all__ = ["__version__"]

try:
    # From the installed package's metadata: the server may import only hyperdash.events.
    __version__ = _package_version("hyperdash")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
