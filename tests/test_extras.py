"""The core install is inference only: a command that needs an extra says which line installs it."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from ferlab.cli.common import user_errors
from ferlab.errors import EXTRAS


def command_missing(module: str) -> typer.Typer:
    @user_errors
    def needs_it() -> None:
        raise ModuleNotFoundError(f"No module named '{module}'", name=module)

    app = typer.Typer()
    app.command()(needs_it)
    return app


@pytest.mark.parametrize(("module", "extra"), [("torch", "train"), ("matplotlib.pyplot", "train"), ("fastapi", "api")])
def test_a_missing_optional_module_names_its_extra(module: str, extra: str) -> None:
    result = CliRunner().invoke(command_missing(module), [])
    assert result.exit_code == 2
    assert f"pip install 'ferlab[{extra}]'" in result.output
    assert "Traceback" not in result.output


def test_any_other_missing_module_is_a_bug_and_keeps_its_traceback() -> None:
    result = CliRunner().invoke(command_missing("not_a_ferlab_dependency"), [])
    assert isinstance(result.exception, ModuleNotFoundError)


def test_every_extra_named_exists_in_pyproject() -> None:
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(EXTRAS.values()) <= set(extras)
