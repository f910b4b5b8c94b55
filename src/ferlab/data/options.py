"""Options that change what a dataset load produces (and so key its cache)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from ferlab.errors import FerlabError


@dataclass(frozen=True)
class LoadOptions:
    """How images are decoded and how samples without a given split are split.

    size, channels: every image is resized to size x size and converted to gray (1) or RGB (3).
    seed, val_fraction, test_fraction: the seeded stratified split used where the source has none.
    ferplus_majority: "strict" is the FER+ authors' rule (single votes ignored, the top
        emotion needs more than half of the votes); "plurality" takes the most-voted
        column. Either way a sample whose winner is unknown or not-a-face is dropped.
    """

    size: int = 48
    channels: int = 1
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    ferplus_majority: Literal["strict", "plurality"] = "strict"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise FerlabError(f"channels must be 1 (gray) or 3 (RGB), got {self.channels}")
        if not 8 <= self.size <= 1024:
            raise FerlabError(f"image size must be between 8 and 1024 pixels, got {self.size}")
        if not (
            0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1
        ):
            raise FerlabError("val_fraction and test_fraction must be in [0, 1) and sum below 1")
        if self.ferplus_majority not in ("strict", "plurality"):
            raise FerlabError(f"ferplus_majority must be 'strict' or 'plurality', got {self.ferplus_majority!r}")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
