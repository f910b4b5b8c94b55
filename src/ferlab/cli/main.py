"""The `ferlab` command: a thin Typer front end over the library."""

from __future__ import annotations

import logging
import sys

import typer

from ferlab.cli.common import ProgressSafeHandler
from ferlab.cli.data import data_app
from ferlab.cli.demo import demo
from ferlab.cli.evaluate import bench, evaluate, explain
from ferlab.cli.options import Typer
from ferlab.cli.predict import export, models, predict, video, webcam
from ferlab.cli.serve import app_command, serve
from ferlab.cli.train import runs_app, train

app = Typer(
    help="ferlab: facial expression recognition — data, training, evaluation and inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from ferlab import __version__

        typer.echo(f"ferlab {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    handler = ProgressSafeHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


app.command("demo")(demo)
app.add_typer(data_app, name="data")
app.command("train")(train)
app.add_typer(runs_app, name="runs")
app.command("evaluate")(evaluate)
app.command("explain")(explain)
app.command("bench")(bench)
app.command("predict")(predict)
app.command("video")(video)
app.command("webcam")(webcam)
app.command("export")(export)
app.command("models")(models)
app.command("serve")(serve)
app.command("app")(app_command)

if __name__ == "__main__":
    app()
