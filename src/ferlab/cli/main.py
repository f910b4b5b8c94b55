"""The `ferlab` command: a thin Typer front end over the library."""

from __future__ import annotations

import logging
import sys

import typer

from ferlab.cli.common import user_errors  # noqa: F401  (the commands of other branches still take it from here)

app = typer.Typer(
    help="ferlab: facial expression recognition — data, training, evaluation and inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


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


if __name__ == "__main__":  # python -m ferlab.cli.main, as the `ferlab` script
    app()
