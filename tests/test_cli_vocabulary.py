"""One vocabulary across the CLI: every command and sub-command, found by walking the Typer
app, spells a shared option the same way, the front ends that classify take the inference
options, switches show no `<bool>`, and the old spellings still work with a note."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from conftest import make_class_tree
from ferlab.cli.main import app
from ferlab.inference.choices import check_options, options_from_env, options_to_env
from ferlab.models.choices import TTA_CHOICES, chosen_tta, is_device
from ferlab.models.prior import DEFAULT_PRIOR, chosen_prior
from ferlab.models.shipped import DEFAULT_MODEL

runner = CliRunner()

SHARED = {
    "model": ("--model", "-m"),
    "detect": ("--detect", "--no-detect"),
    "detector": ("--detector",),
    "backend": ("--backend",),
    "precision": ("--precision",),
    "tta": ("--tta",),
    "prior": ("--prior",),
    "device": ("--device",),
    "split_seed": ("--split-seed",),
}
"""Each shared concept (the parameter's name) and its one spelling."""
INFERENCE = {"model", "detector", "tta", "prior", "device"}
OFFERS = {
    "predict": INFERENCE | {"detect", "backend", "precision"},
    "video": INFERENCE | {"backend", "precision"},
    "webcam": INFERENCE | {"backend", "precision"},
    "serve": INFERENCE | {"backend", "precision"},
    "app": INFERENCE | {"backend", "precision"},
    "explain": INFERENCE | {"detect"},  # Grad-CAM runs on torch in fp32: no backend or precision
    "evaluate": {"model", "detect", "detector", "tta", "device"},
    "bench": {"model", "detect", "detector", "tta", "device"},
    "export": {"model"},
    "runs card": {"model"},
    "data info": {"split_seed"},
    "data eda": {"split_seed"},
    "data audit": {"split_seed"},
    "train": {"device"},
}
"""What each command must offer at least (the commands that classify take the inference options)."""


def commands() -> Iterator[tuple[str, Any]]:
    """Every command and group of the app, by its path ("" for `ferlab` itself)."""

    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
        yield " ".join(path), command
        for name, sub in (getattr(command, "commands", None) or {}).items():
            yield from walk(sub, (*path, name))

    yield from walk(typer.main.get_command(app), ())


def visible_options(command: Any) -> dict[str, tuple[str, ...]]:
    return {
        p.name: (*p.opts, *p.secondary_opts) for p in command.params if p.param_type_name == "option" and not p.hidden
    }


def test_the_walk_finds_every_command() -> None:
    found = {path for path, _ in commands()}
    assert set(OFFERS) <= found and {"", "data", "runs", "runs compare", "models"} <= found


def test_each_option_has_one_spelling_on_every_command() -> None:
    spellings: dict[str, dict[tuple[str, ...], list[str]]] = defaultdict(lambda: defaultdict(list))
    for path, command in commands():
        for name, declared in visible_options(command).items():
            spellings[name][declared].append(path or "ferlab")
    for name, expected in SHARED.items():
        assert set(spellings[name]) == {expected}, (name, dict(spellings[name]))
    mixed = {name: dict(found) for name, found in spellings.items() if len(found) > 1}
    assert not mixed, mixed  # not only the shared ones: any option two commands have is spelled alike
    shown = {path: {o for d in visible_options(command).values() for o in d} for path, command in commands()}
    assert not [path for path, options in shown.items() if "--seed" in options]  # now --split-seed


def test_the_front_ends_that_classify_take_the_inference_options() -> None:
    offered = {path: set(visible_options(command)) for path, command in commands()}
    missing = {path: sorted(wanted - offered[path]) for path, wanted in OFFERS.items() if wanted - offered[path]}
    assert not missing, missing


def test_no_help_shows_a_switch_as_taking_a_value() -> None:
    for path, _ in commands():
        result = runner.invoke(app, [*path.split(), "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output and "old_" not in result.output, (path, result.output)
    help_text = runner.invoke(app, ["predict", "--help"], terminal_width=200).output
    assert "--no-detect" in help_text and DEFAULT_MODEL in help_text and "auto" in help_text


def test_tta_choices_name_auto_the_default() -> None:
    assert TTA_CHOICES[0] == "auto" and chosen_tta("auto") is None and chosen_tta("flip") == "flip"
    with pytest.raises(Exception, match="'foo'.*auto") as caught:
        chosen_tta("foo")
    assert type(caught.value).__name__ == "FerlabError"


def test_one_check_refuses_any_bad_option_by_its_value() -> None:
    from ferlab.errors import FerlabError

    check_options()  # every default is valid
    for bad, value in [
        ({"detector": "dlib"}, "dlib"),
        ({"backend": "tf"}, "tf"),
        ({"precision": "fp16"}, "fp16"),
        ({"tta": "rotate"}, "rotate"),
        ({"prior": "2"}, "2"),
        ({"device": "gpu"}, "gpu"),
        ({"device": "cuda:"}, "cuda:"),
    ]:
        with pytest.raises(FerlabError, match=value):
            check_options(**bad)
    assert is_device("cuda:1") and is_device("auto", auto=True) and not is_device("auto")
    assert options_from_env({"FERLAB_PREDICTOR_OPTIONS": options_to_env({"tta": "flip", "prior": None})}) == {
        "tta": "flip"
    }


def test_the_default_prior_is_half_and_falls_back_only_when_not_asked_for(caplog: pytest.LogCaptureFixture) -> None:
    from ferlab.errors import FerlabError

    strength, prior = chosen_prior(None, [0.5, 0.25, 0.25], 3)
    assert strength == DEFAULT_PRIOR == 0.5 and prior is not None
    with caplog.at_level("WARNING", logger="ferlab.models"):
        assert chosen_prior(None, None, 3, "old-model") == (0.0, None)
    assert "old-model" in caplog.text and "class prior" in caplog.text
    for explicit in ("0.5", 0.5, "uniform"):
        with pytest.raises(FerlabError, match="--prior train"):
            chosen_prior(explicit, None, 3)
    assert chosen_prior("train", None, 3) == (0.0, None)


def test_old_spellings_still_work_with_a_note(tmp_path: Path) -> None:
    root = make_class_tree(tmp_path / "d", {"angry": 8, "happy": 2})
    new = runner.invoke(app, ["data", "info", str(root), "--split-seed", "3"])
    old = runner.invoke(app, ["data", "info", str(root), "--seed", "3"])
    assert new.exit_code == 0 and old.exit_code == 0, old.output
    assert "note:" in old.output and "--split-seed" in old.output and "note:" not in new.output
    assert new.stdout == old.stdout  # the same split


def test_the_model_given_twice_is_refused_naming_the_flag() -> None:
    result = runner.invoke(app, ["export", "a-model", "--model", "b-model"])
    assert result.exit_code == 2 and "--model b-model" in result.output and "a-model" in result.output
