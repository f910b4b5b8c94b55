"""`ferlab demo`: the main job (detect, classify, annotate, print the table) on the bundled photo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferlab import SAMPLE
from ferlab.cli.common import user_errors
from ferlab.cli.predict import predict


@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the annotated copy of the sample photo.")] = Path(
        "ferlab-demo"
    ),
) -> None:
    """Run ferlab on the public-domain sample photo that ships with it: no photo of your own needed."""
    typer.echo(f"sample photo: {SAMPLE} (public domain, NASA)")
    predict([str(SAMPLE)], annotate=out)
    typer.echo(f"annotated copy: {out / (SAMPLE.stem + '.annotated.png')}")
