"""The Hyperdash server: the HTTP API and the web dashboard (the ``server`` extra).

It imports nothing of the SDK but its dependency-free shared pieces: :mod:`hyperdash.events`
(the schema the two share), :mod:`hyperdash.settings` (the home folder and the settings file)
and :mod:`hyperdash.errors`.

- ``main``: ``serve`` (the ``hyperdash server`` command), ``ServerThread``, local mode
- ``app``: the app factory, ``create_app(db_url, lost_timeout)``
- ``api``: the JSON API under ``/api/v1``; ``pages``: the dashboard's pages
- ``auth``: accounts, keys, tokens, browser sessions (see its docstring for page routes)
- ``checks``: checking an ingest request into a ``batch`` (its rows: lines, points, marks)
- ``ingest``: storing a checked batch, and the sweep that marks silent runs lost
- ``queries``: reads; ``views``: JSON shapes
- ``store``: tables, migrations, the engine; ``dialect``: what differs between SQLite and
  PostgreSQL; ``writer``: the single writer thread
- ``facts``: what the store announces after a commit; ``announce``: the dispatcher that hands
  them to subscribers off the writer thread
- ``live``: the subscriber that fans facts out to server-sent event streams
- ``errors``: the exception hierarchy and JSON error replies
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version

__all__ = ["__version__"]

try:
    # From the installed package's metadata.
    __version__ = _package_version("hyperdash")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
