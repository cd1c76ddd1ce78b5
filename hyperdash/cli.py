"""The ``hyperdash`` command (alias ``hd``)."""

from __future__ import annotations

import click

from .events import DEFAULT_PORT
from .version import __version__


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
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--db",
    "db_url",
    default=None,
    help="Database URL (sqlite:////abs/path.db or postgresql://...). Default: a SQLite file under ~/.hyperdash/.",
)
@click.option(
    "--lost-timeout",
    default=None,
    type=float,
    help="Seconds without a heartbeat after which a running run is marked lost.",
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


def main():
    cli(prog_name="hyperdash")
