"""The `ferlab` command: a thin Typer front end over the library."""

from __future__ import annotations

import logging
import sys
from functools import wraps
from typing import Callable, TypeVar

import typer

from ferlab.errors import FerlabError

app = typer.Typer(
    help="ferlab: facial expression recognition — data, training, evaluation and inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., object])


def user_errors(command: F) -> F:
    """Print a FerlabError, or an OSError (a full disk, a folder that cannot be written), as
    one line and exit 2, instead of a traceback."""

    @wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except (FerlabError, OSError) as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.secho("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )


def _register() -> None:
    from ferlab.cli.data import data_app
    from ferlab.cli.evaluate import bench, evaluate, explain
    from ferlab.cli.predict import export, predict, video, webcam
    from ferlab.cli.serve import app_command, serve
    from ferlab.cli.train import runs_app, train

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
    app.command("serve")(serve)
    app.command("app")(app_command)


_register()
