"""Exact and near-duplicate images within a dataset or between two: the leakage audit.

A test image that also sits (maybe re-encoded, slightly shifted or re-exposed) in the
training split inflates every score measured on it. Comparing every pair of pixels is
out of reach for tens of thousands of images, so the audit works in two stages:

1. a 64-bit DCT perceptual hash per image; pairs whose hashes differ in at most
   `max_hamming` bits are candidates (brute force on uint64 XOR, chunked);
2. each candidate is confirmed by the Pearson correlation of the two gray images at a
   common size, the best over shifts of up to `max_shift` pixels, so a re-cropped copy
   still matches; identical pixels are `exact`, confirmed others `near`.

A mirrored copy is a different image here: no flipped comparison is made.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm

from ferlab.data.dataset import SPLITS, FaceDataset
from ferlab.data.markdown import markdown_table
from ferlab.errors import FerlabError

DuplicateKind = Literal["exact", "near"]

_HASH_SIZE = 32  # the gray image is reduced to 32x32 before the DCT
_HASH_BLOCK = 8  # the top-left 8x8 DCT coefficients give the 64 bits
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # as Pillow's RGB -> L
_BIT_WEIGHTS = np.uint64(1) << np.arange(64, dtype=np.uint64)


MAX_HAMMING = 12
"""Default hash bits (of 64) two images may differ in to be compared at all."""
MIN_CORRELATION = 0.9
"""Default pixel correlation a near duplicate needs."""
MAX_SHIFT = 2
"""Default shift, in pixels each way, tried before correlating."""


@dataclass(frozen=True)
class AuditThresholds:
    """When two images count as duplicates.

    max_hamming: hash bits that may differ for a pair to be checked at all (0-64; the
        median split sets 31 bits in every hash, so distances are always even).
    min_correlation: Pearson correlation of the gray pixels a near duplicate needs.
    max_shift: the correlation is the best over shifts of up to this many pixels.
    """

    max_hamming: int = MAX_HAMMING
    min_correlation: float = MIN_CORRELATION
    max_shift: int = MAX_SHIFT

    def __post_init__(self) -> None:
        if not 0 <= self.max_hamming <= 64:
            raise FerlabError(f"max hash distance must be between 0 and 64 bits, got {self.max_hamming}")
        if not 0 < self.min_correlation <= 1:
            raise FerlabError(f"min correlation must be in (0, 1], got {self.min_correlation}")
        if self.max_shift < 0:
            raise FerlabError(f"max shift must be 0 or more pixels, got {self.max_shift}")

    def describe(self) -> str:
        return (
            f"hash distance <= {self.max_hamming} bits, correlation >= {self.min_correlation:g}, "
            f"shifts up to {self.max_shift} px"
        )


@dataclass(frozen=True)
class DuplicatePair:
    """Two images found to be the same picture; `a` is from the audited dataset, `b` from
    the same one (within-dataset audit, `a` in the earlier split) or from `against`."""

    index_a: int
    index_b: int
    source_a: str
    source_b: str
    split_a: str
    split_b: str
    label_a: str
    label_b: str
    hamming: int
    correlation: float
    kind: DuplicateKind

    @property
    def same_label(self) -> bool:
        return self.label_a == self.label_b


@dataclass
class AuditResult:
    """The confirmed pairs of an audit, with tallies and the deduplicated query list."""

    dataset: FaceDataset
    against: FaceDataset | None
    thresholds: AuditThresholds
    candidates: int
    pairs: list[DuplicatePair]

    def count(self, kind: DuplicateKind) -> int:
        return sum(p.kind == kind for p in self.pairs)

    def by_split_pair(self) -> dict[tuple[str, str], Counter[str]]:
        """{(split_a, split_b): Counter(exact=, near=, label_differs=)} in split order."""
        tally: dict[tuple[str, str], Counter[str]] = {}
        for pair in self.pairs:
            _add(tally.setdefault((pair.split_a, pair.split_b), Counter()), pair)
        order = {s: i for i, s in enumerate(SPLITS)}
        return dict(sorted(tally.items(), key=lambda item: (order[item[0][0]], order[item[0][1]])))

    def by_class(self) -> dict[str, Counter[str]]:
        """{class: Counter(exact=, near=, label_differs=)}; a pair counts once for each of
        its two labels (once in all when they agree)."""
        tally: dict[str, Counter[str]] = {}
        for pair in self.pairs:
            for label in dict.fromkeys((pair.label_a, pair.label_b)):
                _add(tally.setdefault(label, Counter()), pair)
        return dict(sorted(tally.items(), key=lambda item: -(item[1]["exact"] + item[1]["near"])))

    def label_disagreements(self) -> Counter[tuple[str, str]]:
        """How often a duplicate pair carries each (label_a, label_b) combination that differs."""
        return Counter((p.label_a, p.label_b) for p in self.pairs if not p.same_label)

    def query(self) -> FaceDataset:
        """The dataset the clean list is drawn from: `against`, else the audited one."""
        return self.dataset if self.against is None else self.against

    def leaked(
        self, reference_splits: Sequence[str] = ("train",), query_splits: Sequence[str] | None = None
    ) -> np.ndarray:
        """Sorted indices (into `query()`) of the query samples with a duplicate in the
        reference splits of the audited dataset (see `leakage_splits` for the defaults)."""
        reference, queried = leakage_splits(self.dataset, self.against, reference_splits, query_splits)
        hits: set[int] = set()
        for p in self.pairs:
            if p.split_a in reference and p.split_b in queried:
                hits.add(p.index_b)
            if self.against is None and p.split_b in reference and p.split_a in queried:
                hits.add(p.index_a)
        return np.array(sorted(hits), dtype=np.int64)

    def clean(
        self, reference_splits: Sequence[str] = ("train",), query_splits: Sequence[str] | None = None
    ) -> np.ndarray:
        """Source ids of the query samples with no duplicate in the reference splits."""
        _, queried = leakage_splits(self.dataset, self.against, reference_splits, query_splits)
        keep = np.isin(self.query().splits, queried)
        keep[self.leaked(reference_splits, queried)] = False
        return self.query().sources[keep]


def leakage_splits(
    dataset: FaceDataset,
    against: FaceDataset | None,
    reference_splits: Sequence[str] = ("train",),
    query_splits: Sequence[str] | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Checked (reference, query) splits of a leakage question.

    Reference splits are of `dataset`; query splits default to its test split, or to
    every split of `against`. Absent, empty or (within one dataset) shared splits are
    errors, raised before any work is done when a front end calls this first.
    """
    query = dataset if against is None else against
    if query_splits is None:
        query_splits = ("test",) if against is None else query.split_names()
    if not reference_splits or not query_splits:
        raise FerlabError("name at least one reference split and one query split")
    for split in reference_splits:
        dataset.split(split)  # a clear error for an unknown or empty split
    for split in query_splits:
        query.split(split)
    if against is None and set(reference_splits) & set(query_splits):
        raise FerlabError(
            f"reference splits ({', '.join(reference_splits)}) and query splits "
            f"({', '.join(query_splits)}) overlap: a sample would be its own duplicate"
        )
    return tuple(reference_splits), tuple(query_splits)


def _add(counter: Counter[str], pair: DuplicatePair) -> None:
    counter[pair.kind] += 1
    counter["label_differs"] += not pair.same_label


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) box-filter resampling: row i averages the input pixels it covers."""
    edges = np.arange(n_out + 1) * n_in / n_out
    pixels = np.arange(n_in)
    overlap = np.minimum(edges[1:, None], pixels[None, :] + 1) - np.maximum(edges[:-1, None], pixels[None, :])
    return (np.clip(overlap, 0, None) * n_out / n_in).astype(np.float32)


def _dct_matrix(n: int, k: int) -> np.ndarray:
    """The first k rows of the (unnormalised) DCT-II of length n."""
    return np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * np.arange(k)[:, None] / (2 * n)).astype(np.float32)


def _gray(images: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """float32 (N, h, w) gray images from uint8 (N, H, W, C), area-resized to `shape`."""
    gray = images[..., 0].astype(np.float32) if images.shape[-1] == 1 else images.astype(np.float32) @ _LUMA
    if shape is None or shape == gray.shape[1:]:
        return gray
    return _area_matrix(gray.shape[1], shape[0]) @ gray @ _area_matrix(gray.shape[2], shape[1]).T


def perceptual_hash(images: np.ndarray, batch: int = 4096, progress: bool = False) -> np.ndarray:
    """64-bit DCT pHash (uint64) of each uint8 (N, H, W, C) image.

    Gray, 32x32 area resize, 2-D DCT; a bit is set where a coefficient of the top-left
    8x8 block exceeds the median of that block's 63 AC coefficients. The DC term (mean
    brightness) is left out of the median and its bit is always 0, so a brighter copy
    hashes the same. Resize and DCT are one matrix product each side, for all images.
    """
    rows = _dct_matrix(_HASH_SIZE, _HASH_BLOCK) @ _area_matrix(images.shape[1], _HASH_SIZE)
    cols = _dct_matrix(_HASH_SIZE, _HASH_BLOCK) @ _area_matrix(images.shape[2], _HASH_SIZE)
    hashes = np.empty(len(images), dtype=np.uint64)
    for start in tqdm(
        range(0, len(images), batch),
        desc="hashing",
        unit="batch",
        leave=False,
        disable=not progress or len(images) < 100_000,
    ):  # ~0.5 s per 100k
        coefficients = (rows @ _gray(images[start : start + batch]) @ cols.T).reshape(-1, 64)
        median = np.median(coefficients[:, 1:], axis=1, keepdims=True)
        bits = coefficients > median
        bits[:, 0] = False
        hashes[start : start + batch] = np.bitwise_or.reduce(np.where(bits, _BIT_WEIGHTS, np.uint64(0)), axis=1)
    return hashes


def hash_candidates(
    hashes_a: np.ndarray,
    hashes_b: np.ndarray | None,
    max_distance: int,
    chunk: int = 1024,
    max_candidates: int = 5_000_000,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) of every pair within `max_distance` bits, by brute force.

    With `hashes_b` None the pairs are within `hashes_a`, each once with i < j. More
    than `max_candidates` pairs (minutes of confirmation, gigabytes) is refused.
    """
    within = hashes_b is None
    other = hashes_a if hashes_b is None else hashes_b
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    total = 0
    for start in tqdm(
        range(0, len(hashes_a), chunk), desc="comparing hashes", unit="chunk", leave=False, disable=not progress
    ):
        rows = hashes_a[start : start + chunk]
        first = start if within else 0  # within: only columns from the chunk's own rows on
        distance = np.bitwise_count(rows[:, None] ^ other[None, first:])
        close = distance <= max_distance
        if within:  # the chunk's own block: keep j > i only
            close[:, : len(rows)] &= np.triu(np.ones((len(rows), len(rows)), dtype=bool), k=1)
        i, j = np.nonzero(close)
        found.append((i + start, j + first, distance[i, j]))
        total += len(i)
        if total > max_candidates:
            raise FerlabError(
                f"a hash distance of {max_distance} bits gives over {max_candidates:,} candidate pairs; "
                "lower the max hash distance"
            )
    i, j, d = (np.concatenate(parts) for parts in zip(*found))
    return i.astype(np.int64), j.astype(np.int64), d.astype(np.int64)


def _standardise(images: np.ndarray) -> np.ndarray:
    centred = images - images.mean(axis=(1, 2), keepdims=True)
    spread = centred.std(axis=(1, 2), keepdims=True)
    return centred / np.where(spread > 0, spread, 1)  # a constant image stays all zeros


def shifted_correlation(a: np.ndarray, b: np.ndarray, max_shift: int) -> np.ndarray:
    """Per pair k, the best Pearson correlation of a[k] and b[k] (float (n, h, w)) over
    shifts of b by up to `max_shift` pixels each way, computed on the overlap.

    A constant overlap has no defined correlation and scores 0.
    """
    n, h, w = a.shape
    s = max_shift
    a, b = _standardise(a), _standardise(b)  # Pearson ignores this; it keeps float32 exact enough
    windows = sliding_window_view(np.pad(b, ((0, 0), (s, s), (s, s))), (h, w), axis=(1, 2))
    cross = np.einsum("nij,nyxij->nyx", a, windows)  # zero padding: sums over the overlap only
    shifts = np.arange(-s, s + 1)
    # Window (ky, kx) pairs a[y, x] with b[y + ky - s, x + kx - s]; the overlap in a and b:
    a_rows = (np.maximum(0, -shifts), h - np.maximum(0, shifts))
    a_cols = (np.maximum(0, -shifts), w - np.maximum(0, shifts))
    b_rows = (np.maximum(0, shifts), h + np.minimum(0, shifts))
    b_cols = (np.maximum(0, shifts), w + np.minimum(0, shifts))
    sum_a, sum_aa = (_box_sums(x, a_rows, a_cols) for x in (a, a * a))
    sum_b, sum_bb = (_box_sums(x, b_rows, b_cols) for x in (b, b * b))
    size = ((h - np.abs(shifts))[:, None] * (w - np.abs(shifts))[None, :]).astype(np.float32)
    covariance = cross - sum_a * sum_b / size
    variance = (sum_aa - sum_a**2 / size) * (sum_bb - sum_b**2 / size)
    defined = variance > (1e-6 * size) ** 2
    correlation = np.where(defined, covariance / np.sqrt(np.where(defined, variance, 1)), 0)
    return correlation.reshape(n, -1).max(axis=1)


def _box_sums(
    images: np.ndarray, rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """(n, len(rows[0]), len(cols[0])) sums of images[:, r0:r1, c0:c1] for every row range
    r and column range c, from prefix sums at just the cut points needed."""
    row_cuts, row_at = np.unique(np.concatenate(rows), return_inverse=True)
    col_cuts, col_at = np.unique(np.concatenate(cols), return_inverse=True)
    below = (np.arange(images.shape[1])[None, :] < row_cuts[:, None]).astype(np.float32)
    left = (np.arange(images.shape[2])[None, :] < col_cuts[:, None]).astype(np.float32)
    prefix = below @ images @ left.T  # prefix[:, i, j] = images[:, :row_cuts[i], :col_cuts[j]].sum()
    r0, r1 = np.split(row_at, 2)
    c0, c1 = np.split(col_at, 2)
    return (
        prefix[:, r1[:, None], c1[None, :]]
        - prefix[:, r0[:, None], c1[None, :]]
        - prefix[:, r1[:, None], c0[None, :]]
        + prefix[:, r0[:, None], c0[None, :]]
    )


def find_duplicates(
    dataset: FaceDataset,
    against: FaceDataset | None = None,
    thresholds: AuditThresholds | None = None,
    *,
    batch: int = 1024,
    progress: bool = True,
) -> AuditResult:
    """Every exact or near-duplicate pair within `dataset` (all splits), or between
    `dataset` and `against` when given.

    Within one dataset a pair's `a` side is in the earlier split (train, val, test).
    Images of different sizes are compared at the smaller size, where `max_shift` applies.
    """
    thresholds = thresholds or AuditThresholds()
    other = dataset if against is None else against
    common = (min(dataset.images.shape[1], other.images.shape[1]), min(dataset.images.shape[2], other.images.shape[2]))
    if thresholds.max_shift > min(common) // 4:
        raise FerlabError(
            f"max shift {thresholds.max_shift} px is too large for {common[0]}x{common[1]} images "
            f"(at most {min(common) // 4})"
        )
    hashes_a = perceptual_hash(dataset.images, progress=progress)
    hashes_b = None if against is None else perceptual_hash(against.images, progress=progress)
    i, j, distance = hash_candidates(hashes_a, hashes_b, thresholds.max_hamming, progress=progress)
    if against is None:  # orient each pair from the earlier split to the later one
        order = {s: k for k, s in enumerate(SPLITS)}
        rank = np.array([order[s] for s in dataset.splits])
        swap = rank[i] > rank[j]
        i, j = np.where(swap, j, i), np.where(swap, i, j)
    same_shape = dataset.images.shape[1:] == other.images.shape[1:]
    correlation = np.empty(len(i), dtype=np.float32)
    exact = np.zeros(len(i), dtype=bool)
    for start in tqdm(
        range(0, len(i), batch),
        desc="confirming pairs",
        unit="batch",
        leave=False,
        disable=not progress or len(i) < 20 * batch,
    ):
        part = slice(start, start + batch)
        images_a, images_b = dataset.images[i[part]], other.images[j[part]]
        if same_shape:
            exact[part] = (images_a == images_b).all(axis=(1, 2, 3))
        correlation[part] = shifted_correlation(_gray(images_a, common), _gray(images_b, common), thresholds.max_shift)
    keep = exact | (correlation >= thresholds.min_correlation)
    names_a, names_b = dataset.class_names, other.class_names
    pairs = [
        DuplicatePair(
            index_a=int(a),
            index_b=int(b),
            source_a=str(dataset.sources[a]),
            source_b=str(other.sources[b]),
            split_a=str(dataset.splits[a]),
            split_b=str(other.splits[b]),
            label_a=names_a[dataset.labels[a]],
            label_b=names_b[other.labels[b]],
            hamming=int(d),
            correlation=round(float(c), 4),
            kind="exact" if e else "near",
        )
        for a, b, d, c, e in zip(i[keep], j[keep], distance[keep], correlation[keep], exact[keep])
    ]
    pairs.sort(key=lambda p: (p.kind != "exact", p.index_a, p.index_b))
    return AuditResult(dataset, against, thresholds, candidates=len(i), pairs=pairs)


PAIR_COLUMNS: tuple[str, ...] = (
    "kind",
    "hamming",
    "correlation",
    "same_label",
    "source_a",
    "split_a",
    "label_a",
    "source_b",
    "split_b",
    "label_b",
)


def write_pairs_csv(result: AuditResult, path: Path) -> None:
    """One row per duplicate pair, both labels included, in PAIR_COLUMNS order."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PAIR_COLUMNS)
        for pair in result.pairs:
            writer.writerow([pair.same_label if c == "same_label" else getattr(pair, c) for c in PAIR_COLUMNS])


def summary_markdown(
    result: AuditResult, reference_splits: Sequence[str] = ("train",), query_splits: Sequence[str] | None = None
) -> str:
    """The audit as Markdown: settings, counts per split pair and class, label agreement, leakage."""
    reference, queried = leakage_splits(result.dataset, result.against, reference_splits, query_splits)
    a_name = result.dataset.origin or "dataset"
    b_name = result.query().origin or "dataset"
    n_query = int(np.isin(result.query().splits, queried).sum())
    n_leaked = len(result.leaked(reference, queried))
    agree = sum(p.same_label for p in result.pairs)
    lines = [
        "# Duplicate audit",
        "",
        f"- dataset (a): `{a_name}` ({len(result.dataset)} images)",
        f"- against (b): `{b_name}` ({len(result.query())} images)"
        if result.against is not None
        else "- within the dataset: all pairs across and within splits (a is in the earlier split)",
        f"- thresholds: {result.thresholds.describe()}",
        f"- hash candidates checked: {result.candidates}",
        f"- duplicate pairs: {len(result.pairs)} ({result.count('exact')} exact, {result.count('near')} near)",
        f"- label agreement: {agree} of {len(result.pairs)} pairs carry the same label",
        (
            f"- leakage: {n_leaked} of {n_query} query images ({', '.join(queried)} of `{b_name}`) "
            f"have a duplicate in {', '.join(reference)} of `{a_name}`; {n_query - n_leaked} are clean"
        ),
        "",
        "## Per split pair",
        "",
    ]
    lines.append(
        markdown_table(
            ("split a", "split b", "exact", "near", "label differs"),
            ((a, b, c["exact"], c["near"], c["label_differs"]) for (a, b), c in result.by_split_pair().items()),
        )
    )
    lines += ["", "## Per class (a pair counts for each of its labels)", ""]
    lines.append(
        markdown_table(
            ("class", "exact", "near", "label differs"),
            ((name, c["exact"], c["near"], c["label_differs"]) for name, c in result.by_class().items()),
        )
    )
    disagreements = result.label_disagreements()
    if disagreements:
        lines += ["", "## Pairs whose labels differ", ""]
        lines.append(
            markdown_table(("label a", "label b", "pairs"), ((a, b, n) for (a, b), n in disagreements.most_common()))
        )
    return "\n".join(lines) + "\n"


def read_clean_list(path: Path) -> set[str]:
    """Source ids from an audit's --write-clean-split file (comments and blanks ignored)."""
    if not path.is_file():
        raise FerlabError(f"{path}: no such deduplicated list (make one with ferlab data audit --write-clean-split)")
    ids = {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}
    if not ids:
        raise FerlabError(f"{path}: the deduplicated list is empty")
    return ids
