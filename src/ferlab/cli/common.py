"""What every `ferlab` command shares: user errors as one line and exit status 2.

Kept apart from ferlab.cli.main, which imports every command module to register it: a
command module that took this from main could not be imported before main (a cycle).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

import typer

from ferlab.errors import FerlabError, missing_extra

F = TypeVar("F", bound=Callable[..., object])


def user_errors(command: F) -> F:
    """Print a FerlabError, an OSError (a full disk, a folder that cannot be written), a text
    file that is not UTF-8 or a module that an uninstalled extra brings as one line and exit 2,
    instead of a traceback."""

    @wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except (FerlabError, OSError) as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        except ModuleNotFoundError as exc:
            error = missing_extra(exc)
            if error is None:
                raise
            typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        except UnicodeDecodeError as exc:  # a csv or list saved as UTF-16 or Latin-1
            typer.secho(f"error: a text file is not UTF-8 ({exc}); save it as UTF-8", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.secho("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def echo(message: str, *, err: bool = False, fg: str | None = None) -> None:
    """`typer.secho` that never breaks a progress bar: the bars are cleared, the line written, the bars redrawn."""
    from tqdm import tqdm

    with tqdm.external_write_mode(file=sys.stderr if err else sys.stdout):
        typer.secho(message, err=err, fg=fg)


class ProgressSafeHandler(logging.StreamHandler):
    """Log lines (the library's notes and warnings) written like `echo`, around any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        with tqdm.external_write_mode(file=self.stream):
            super().emit(record)
