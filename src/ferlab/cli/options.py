"""The options `ferlab` commands share, each spelled and described once.

The values, defaults, validation and help text of each choice live in the layer that needs
them (ferlab.models.choices, ferlab.models.prior, ferlab.inference.choices); this module only
turns them into Typer options, so a concept has one spelling on every command (the commands
take the defaults from there too). `Typer` makes switches show as switches in help, without a `<bool>` value.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from ferlab.errors import FerlabError
from ferlab.inference.choices import BACKEND_HELP, DETECTOR_HELP, PRECISION_HELP
from ferlab.models.choices import DEVICE_HELP, TRAIN_DEVICE_HELP, TTA_HELP
from ferlab.models.prior import PRIOR_HELP
from ferlab.models.shipped import DEFAULT_MODEL, MODEL_ENV


def _switches_without_type(params: list[Any]) -> list[Any]:
    """An empty metavar on every flag: Typer's help otherwise shows `--no-detect <bool>`, which
    reads as if the switch took a value (and `--no-detect true` then takes "true" as an input)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """Help that shows switches as switches and leaves out the old, hidden positional arguments
    (which click would still list in the usage line)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _switches_without_type(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not getattr(param, "hidden", False):
                pieces += param.get_usage_pieces(ctx)
        return pieces


class Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _switches_without_type(super().get_params(ctx))


class Typer(typer.Typer):
    """`typer.Typer` whose group and commands are `Group` and `Command`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=Group, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


MODEL_HELP = (
    f"Shipped model name, model.pt or run folder; A+B averages models in predict, video, webcam, serve and app "
    f"(default: ${MODEL_ENV}, else {DEFAULT_MODEL})."
)
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help=MODEL_HELP)]
ModelsOpt = Annotated[
    list[str] | None, typer.Option("--model", "-m", help="Shipped model name, model.pt or run folder (repeatable).")
]
DetectOpt = Annotated[
    bool,
    typer.Option(
        "--detect/--no-detect",
        help="Find, align and classify the faces in each photo; --no-detect: each image is a face crop, "
        "classified whole.",
    ),
]
DetectorOpt = Annotated[str, typer.Option("--detector", help=DETECTOR_HELP)]
BackendOpt = Annotated[str, typer.Option("--backend", help=BACKEND_HELP)]
PrecisionOpt = Annotated[str, typer.Option("--precision", help=PRECISION_HELP)]
TtaOpt = Annotated[str, typer.Option("--tta", help=f"Test-time augmentation: {TTA_HELP}")]
PriorOpt = Annotated[str | None, typer.Option("--prior", help=PRIOR_HELP, show_default=False)]
DeviceOpt = Annotated[str, typer.Option("--device", help=DEVICE_HELP)]
TrainDeviceOpt = Annotated[
    str | None, typer.Option("--device", help=f"{TRAIN_DEVICE_HELP} Overrides train.device.", show_default=False)
]
SplitSeedOpt = Annotated[
    int,
    typer.Option(
        "--split-seed",
        help="Seed of the train/val/test split made for data without splits (a run's data.split_seed).",
    ),
]
OldSeedOpt = Annotated[int | None, typer.Option("--seed", hidden=True, help="Old name of --split-seed.")]
OldModelArg = Annotated[str | None, typer.Argument(hidden=True, help="Old place of --model.", show_default=False)]


def deprecated(old: str, new: str) -> None:
    """The one-line note an old spelling prints while it still works (for one more release)."""
    typer.secho(f"note: {old} is deprecated and will be removed; use {new}", fg=typer.colors.YELLOW, err=True)


def model_or_old_argument(model: str | None, positional: str | None, command: str) -> str | None:
    """--model, or the model given the old way, as a positional argument (with a note)."""
    if positional is None:
        return model
    if model is not None:
        raise FerlabError(f"give the model once: --model {model}, or {positional} before the options, not both")
    deprecated(f"`ferlab {command} MODEL`", f"`ferlab {command} --model MODEL`")
    return positional


def split_seed_or_old(split_seed: int, seed: int | None) -> int:
    """--split-seed, or the old --seed (with a note)."""
    if seed is None:
        return split_seed
    deprecated("--seed", "--split-seed")
    return seed
