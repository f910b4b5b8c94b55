"""`ferlab data ...`: look at a dataset before training on it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferlab.cli.common import user_errors
from ferlab.cli.data_audit import audit
from ferlab.cli.options import OldSeedOpt, SplitSeedOpt, Typer, split_seed_or_old
from ferlab.data.dataset import FaceDataset

data_app = Typer(help="Inspect datasets: counts, EDA plots, duplicate audit.", no_args_is_help=True)

PathArg = Annotated[Path, typer.Argument(help="Dataset: class-folder tree, FER+ folder, or fer2013.csv.")]
FormatOpt = Annotated[str, typer.Option("--format", help="auto, folder, fer2013-csv or ferplus-folder.")]
FerplusLabelsOpt = Annotated[
    Path | None, typer.Option("--ferplus-labels", help="FER+ fer2013new.csv to pair with a fer2013.csv.")
]
SizeOpt = Annotated[int, typer.Option("--size", help="Resize images to SIZE x SIZE.")]
ChannelsOpt = Annotated[int, typer.Option("--channels", help="1 = gray, 3 = RGB.")]
MajorityOpt = Annotated[
    str, typer.Option("--ferplus-majority", help="FER+ label rule: strict (the authors') or plurality.")
]


def open_dataset(
    path: Path,
    format: str,
    ferplus_labels: Path | None,
    size: int,
    channels: int,
    ferplus_majority: str,
    seed: int,
) -> FaceDataset:
    from ferlab.data.loader import load_dataset
    from ferlab.data.options import LoadOptions

    options = LoadOptions(size=size, channels=channels, ferplus_majority=ferplus_majority, seed=seed)  # type: ignore[arg-type]
    return load_dataset(path, format=format, ferplus_labels=ferplus_labels, options=options)  # type: ignore[arg-type]


@data_app.command("info")
@user_errors
def info(
    path: PathArg,
    format: FormatOpt = "auto",
    ferplus_labels: FerplusLabelsOpt = None,
    size: SizeOpt = 48,
    channels: ChannelsOpt = 1,
    ferplus_majority: MajorityOpt = "strict",
    split_seed: SplitSeedOpt = 0,
    seed: OldSeedOpt = None,
) -> None:
    """Counts per class and split, imbalance ratio, balanced class weights, image sizes and modes."""
    from ferlab.data.stats import summarize

    seed_used = split_seed_or_old(split_seed, seed)
    dataset = open_dataset(path, format, ferplus_labels, size, channels, ferplus_majority, seed_used)
    typer.echo(summarize(dataset).to_markdown())


@data_app.command("eda")
@user_errors
def eda(
    path: PathArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for the plots and summary.md.")] = Path("eda"),
    format: FormatOpt = "auto",
    ferplus_labels: FerplusLabelsOpt = None,
    size: SizeOpt = 48,
    channels: ChannelsOpt = 1,
    ferplus_majority: MajorityOpt = "strict",
    split_seed: SplitSeedOpt = 0,
    seed: OldSeedOpt = None,
) -> None:
    """Class-distribution and sample-face plots, sharpness per split, and a Markdown summary."""
    from ferlab.data.eda import run_eda

    seed_used = split_seed_or_old(split_seed, seed)
    dataset = open_dataset(path, format, ferplus_labels, size, channels, ferplus_majority, seed_used)
    report = run_eda(dataset, out)
    for split, value in report.sharpness.items():
        typer.echo(f"{split}: mean sharpness {value:.1f}, mostly {report.common_size[split]}")
    for warning in report.warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    typer.echo("wrote " + ", ".join(str(f) for f in report.files))


data_app.command("audit")(audit)
