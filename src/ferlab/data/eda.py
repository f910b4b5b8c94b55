"""Exploratory data analysis: the plots and checks the reports did by hand in notebooks.

Besides class balance and sample faces it compares sharpness and size across splits,
because a widely shared FER2013 copy has Gaussian-blurred training images and sharp test
images, which silently ruins every model trained on it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ferlab.data.dataset import FaceDataset
from ferlab.data.markdown import markdown_table
from ferlab.data.stats import sharpness, summarize

BLUR_RATIO = 0.5
"""Warn when the training split's mean sharpness is below this fraction of the test split's."""


@dataclass
class EdaReport:
    sharpness: dict[str, float]
    common_size: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def split_checks(dataset: FaceDataset, blur_ratio: float = BLUR_RATIO) -> EdaReport:
    """Per-split mean sharpness and most common original size, with warnings on mismatch."""
    splits = dataset.split_names()
    mean_sharpness = {s: float(sharpness(dataset.images[dataset.splits == s]).mean()) for s in splits}
    common_size = {}
    for s in splits:
        (h, w), _ = Counter(map(tuple, dataset.original_sizes[dataset.splits == s].tolist())).most_common(1)[0]
        common_size[s] = f"{h}x{w}"
    warnings: list[str] = []
    reference = "test" if "test" in splits else "val" if "val" in splits else None
    if "train" in splits and reference:
        train, other = mean_sharpness["train"], mean_sharpness[reference]
        if other > 0 and train < blur_ratio * other:
            warnings.append(
                f"the training images are much blurrier than the {reference} images (mean Laplacian "
                f"variance {train:.0f} vs {other:.0f}); this copy's training set may have been "
                "blurred, which ruins models trained on it: get sharp originals"
            )
        if common_size["train"] != common_size[reference]:
            warnings.append(
                f"training images are mostly {common_size['train']} but {reference} images are "
                f"mostly {common_size[reference]}: resolution differs between splits"
            )
    return EdaReport(sharpness=mean_sharpness, common_size=common_size, warnings=warnings)


def plot_class_distribution(dataset: FaceDataset, path: Path) -> None:
    counts = dataset.class_counts()
    classes = dataset.class_names
    fig = Figure(figsize=(4.5 * len(counts), 3.6))
    axes = fig.subplots(1, len(counts), squeeze=False)
    for ax, (split, per_class) in zip(axes[0], counts.items()):
        values = [per_class[c] for c in classes]
        bars = ax.bar(classes, values, color="tab:blue")
        ax.bar_label(bars, fontsize=7)
        ax.set_title(f"{split} ({sum(values)} images)")
        ax.tick_params(axis="x", rotation=45)
    axes[0][0].set_ylabel("images")
    fig.suptitle("Class distribution per split")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_sample_grid(dataset: FaceDataset, path: Path, per_class: int = 8, seed: int = 0) -> None:
    """A grid of random training faces, one row per class."""
    rng = np.random.default_rng(seed)
    pool = dataset.split("train") if "train" in dataset.split_names() else dataset
    classes = dataset.class_names
    fig = Figure(figsize=(per_class * 0.9, len(classes) * 1.0))
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    for row, name in enumerate(classes):
        members = np.flatnonzero(pool.labels == row)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False) if len(members) else members
        for col in range(per_class):
            ax = axes[row][col]
            ax.axis("off")
            if col < len(chosen):
                image = pool.images[chosen[col]]
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
        axes[row][0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout(pad=0.2, h_pad=1.2)
    fig.savefig(path, dpi=110)


def run_eda(dataset: FaceDataset, out_dir: Path) -> EdaReport:
    """Write class_distribution.png, samples.png and summary.md into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = split_checks(dataset)
    distribution, samples, summary = (
        out_dir / "class_distribution.png",
        out_dir / "samples.png",
        out_dir / "summary.md",
    )
    plot_class_distribution(dataset, distribution)
    plot_sample_grid(dataset, samples)
    lines = [
        "# Dataset EDA",
        "",
        summarize(dataset).to_markdown(),
        "",
        "## Sharpness and size per split",
        "",
        markdown_table(
            ("split", "mean sharpness (Laplacian variance)", "most common original size"),
            ((s, f"{report.sharpness[s]:.1f}", report.common_size[s]) for s in report.sharpness),
            right=[1],
        ),
        "",
        "## Warnings",
        "",
        *([f"- {w}" for w in report.warnings] or ["None."]),
        "",
        "## Plots",
        "",
        f"![class distribution]({distribution.name})",
        "",
        f"![sample faces per class]({samples.name})",
        "",
    ]
    summary.write_text("\n".join(lines))
    report.files = [distribution, samples, summary]
    return report
