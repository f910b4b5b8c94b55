"""`python -m ferlab ...` runs the `ferlab` command."""

from ferlab.cli.main import app

app()
