"""`ferlab data audit`: exact and near-duplicate images, and test images leaked from train."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import numpy as np
import typer

from ferlab.cli.common import user_errors
from ferlab.cli.options import SplitSeedOpt
from ferlab.data.audit import MAX_HAMMING, MAX_SHIFT, MIN_CORRELATION

if TYPE_CHECKING:
    from ferlab.data.loader import DatasetFormat

_FORMAT_HELP = "auto, folder, fer2013-csv or ferplus-folder."
_FERPLUS_HELP = "FER+ fer2013new.csv to pair with a fer2013.csv."


@user_errors
def audit(
    path: Annotated[
        Path,
        typer.Argument(
            help="Dataset to audit: class-folder tree, FER+ folder, or fer2013.csv.",
        ),
    ],
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            help="A second dataset: find its (query split) images in PATH instead of auditing PATH alone.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for pairs.csv and summary.md.")] = Path("audit"),
    max_hamming: Annotated[
        int,
        typer.Option(
            "--max-hamming",
            help="Hash bits (of 64) two images may differ in to be compared at all.",
        ),
    ] = MAX_HAMMING,
    min_correlation: Annotated[
        float,
        typer.Option(
            "--min-correlation",
            help="Pixel correlation a near duplicate needs.",
        ),
    ] = MIN_CORRELATION,
    max_shift: Annotated[
        int,
        typer.Option(
            "--max-shift",
            help="Try shifts of up to this many pixels before correlating.",
        ),
    ] = MAX_SHIFT,
    reference_split: Annotated[
        list[str] | None,
        typer.Option(
            "--reference-split",
            help="Split of PATH a clean query image must not duplicate (repeatable).",
            show_default="train",
        ),
    ] = None,
    query_split: Annotated[
        list[str] | None,
        typer.Option(
            "--query-split",
            help="Split to deduplicate (repeatable).",
            show_default="test of PATH, or every split of --against",
        ),
    ] = None,
    write_clean_split: Annotated[
        Path | None,
        typer.Option(
            "--write-clean-split",
            help="Write the source ids of the query images with no duplicate to this file.",
        ),
    ] = None,
    split_seed: SplitSeedOpt = 0,
    format: Annotated[str, typer.Option("--format", help=_FORMAT_HELP)] = "auto",
    ferplus_labels: Annotated[Path | None, typer.Option("--ferplus-labels", help=_FERPLUS_HELP)] = None,
    against_format: Annotated[str, typer.Option("--against-format", help=_FORMAT_HELP)] = "auto",
    against_ferplus_labels: Annotated[
        Path | None,
        typer.Option(
            "--against-ferplus-labels",
            help=_FERPLUS_HELP,
        ),
    ] = None,
) -> None:
    """Find exact and near-duplicate images (perceptual hash, then pixel correlation) and
    the query images that duplicate a reference image, e.g. test images also in train."""
    from ferlab.data.audit import (
        AuditThresholds,
        find_duplicates,
        leakage_splits,
        summary_markdown,
        write_pairs_csv,
    )
    from ferlab.data.loader import load_dataset
    from ferlab.data.options import LoadOptions

    thresholds = AuditThresholds(max_hamming, min_correlation, max_shift)  # bad values fail before loading
    options = LoadOptions(seed=split_seed)
    dataset = load_dataset(path, format=cast("DatasetFormat", format), ferplus_labels=ferplus_labels, options=options)
    other = None
    if against is not None:
        other = load_dataset(
            against,
            format=cast("DatasetFormat", against_format),
            ferplus_labels=against_ferplus_labels,
            options=options,
        )
    reference, queried = leakage_splits(dataset, other, reference_split or ("train",), query_split)
    if other is not None:  # only the query splits of the second dataset are searched for
        other = other.subset(np.isin(other.splits, queried))

    started = time.perf_counter()
    result = find_duplicates(dataset, other, thresholds)
    seconds = time.perf_counter() - started

    out.mkdir(parents=True, exist_ok=True)
    write_pairs_csv(result, out / "pairs.csv")
    (out / "summary.md").write_text(summary_markdown(result, reference, queried))
    written = [out / "pairs.csv", out / "summary.md"]
    leaked = result.leaked(reference, queried)
    clean = result.clean(reference, queried)
    query_name = result.query().origin
    if write_clean_split is not None:
        write_clean_split.parent.mkdir(parents=True, exist_ok=True)
        header = (
            f"# ferlab data audit: the {', '.join(queried)} images of {query_name} with no exact or near "
            f"duplicate in {', '.join(reference)} of {dataset.origin}, one source id per line\n"
            f"# {len(clean)} of {len(clean) + len(leaked)} kept; {thresholds.describe()}\n"
        )
        write_clean_split.write_text(header + "".join(f"{source}\n" for source in clean))
        written.append(write_clean_split)

    typer.echo(
        f"{len(result.pairs)} duplicate pairs ({result.count('exact')} exact, {result.count('near')} near) "
        f"from {result.candidates} hash candidates in {seconds:.1f} s; {thresholds.describe()}"
    )
    for (split_a, split_b), counts in result.by_split_pair().items():
        typer.echo(
            f"  {split_a}/{split_b}: {counts['exact']} exact, {counts['near']} near, "
            f"{counts['label_differs']} with different labels"
        )
    typer.echo(
        f"leakage: {len(leaked)} of {len(clean) + len(leaked)} {'/'.join(queried)} images of {query_name} "
        f"duplicate {'/'.join(reference)} of {dataset.origin}; {len(clean)} clean"
    )
    typer.echo("wrote " + ", ".join(str(f) for f in written))
