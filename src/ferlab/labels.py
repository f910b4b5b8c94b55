"""Canonical emotion names, the label sets ferlab knows, and mappings between them.

Every dataset, model and front end speaks in these canonical names, so a model trained
on FER+ ("happiness") can be evaluated on a FER2013 folder ("happy") without guesswork.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ferlab.errors import FerlabError

EMOTIONS: tuple[str, ...] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "sad",
    "surprise",
    "neutral",
    "contempt",
)

_SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "angry": "angry",
    "mad": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "scared": "fear",
    "afraid": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "suprise": "surprise",  # a misspelling found in shared datasets
    "suprised": "surprise",
    "neutral": "neutral",
    "contempt": "contempt",
}


def canonical_emotion(name: str) -> str:
    """Map a class name as found in the wild (any case, synonym, typo) to its canonical name."""
    key = name.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    # Folder names are often prefixed with an id ("0_angry", "3 happy").
    key = key.lstrip("0123456789")
    try:
        return _SYNONYMS[key]
    except KeyError:
        raise FerlabError(f"unknown emotion class name {name!r}; known names: {', '.join(sorted(_SYNONYMS))}") from None


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of classes; a label is an index into `classes`."""

    name: str
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        canonical = tuple(canonical_emotion(c) for c in self.classes)
        if canonical != self.classes:
            raise FerlabError(f"label set {self.name!r} must use canonical names, got {self.classes}")
        if len(set(self.classes)) != len(self.classes):
            raise FerlabError(f"label set {self.name!r} repeats a class: {self.classes}")

    def __len__(self) -> int:
        return len(self.classes)

    def index(self, name: str) -> int:
        """Index of a class given any spelling of its name."""
        emotion = canonical_emotion(name)
        if emotion not in self.classes:
            raise FerlabError(f"class {name!r} is not in label set {self.name!r} ({', '.join(self.classes)})")
        return self.classes.index(emotion)


FER2013 = LabelSet("fer2013", ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"))
"""FER2013's 7 classes in the order of the csv's emotion ids 0..6."""
FERPLUS = LabelSet("ferplus", ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"))
"""FER+'s 8 emotions in the order of its vote columns (neutral, happiness, surprise, ...)."""
FIVE = LabelSet("five", ("angry", "fear", "happy", "sad", "surprise"))
"""The 5-class set of the transfer-learning report."""

LABEL_SETS: dict[str, LabelSet] = {s.name: s for s in (FER2013, FERPLUS, FIVE)}


def get_label_set(name: str) -> LabelSet:
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise FerlabError(f"unknown label set {name!r}; known: {', '.join(LABEL_SETS)}") from None


def label_set_for(classes: set[str]) -> LabelSet:
    """The known label set with exactly these canonical classes, else a custom one.

    A custom set keeps the canonical order of `EMOTIONS`, so two folders with the same
    classes always get the same label indices.
    """
    for label_set in LABEL_SETS.values():
        if set(label_set.classes) == classes:
            return label_set
    ordered = tuple(e for e in EMOTIONS if e in classes)
    return LabelSet("custom-" + "-".join(ordered), ordered)


@dataclass(frozen=True)
class LabelMapping:
    """How labels of `source` become labels of `target`.

    `index[i]` is the target index of source class i, or -1 when that class is dropped.
    """

    source: LabelSet
    target: LabelSet
    index: tuple[int, ...]
    dropped: tuple[str, ...]
    merged: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"{self.source.name} -> {self.target.name}"]
        if self.dropped:
            parts.append(f"dropped: {', '.join(self.dropped)}")
        if self.merged:
            parts.append("merged: " + ", ".join(f"{s} into {t}" for s, t in self.merged.items()))
        if self.missing:
            parts.append(f"absent from source: {', '.join(self.missing)}")
        return "; ".join(parts)


def map_labels(source: LabelSet, target: LabelSet, merge: dict[str, str] | None = None) -> LabelMapping:
    """Map `source` classes onto `target`: same emotions map, `merge` folds extra ones in.

    Classes of `source` absent from `target` and not merged are dropped, and the mapping
    says so, so no caller silently loses a class.
    """
    merged = {canonical_emotion(s): canonical_emotion(t) for s, t in (merge or {}).items()}
    for s, t in merged.items():
        if s not in source.classes:
            raise FerlabError(f"cannot merge {s!r}: it is not in {source.name}")
        if t not in target.classes:
            raise FerlabError(f"cannot merge into {t!r}: it is not in {target.name}")
    index: list[int] = []
    dropped: list[str] = []
    for emotion in source.classes:
        destination = merged.get(emotion, emotion)
        if destination in target.classes:
            index.append(target.classes.index(destination))
        else:
            index.append(-1)
            dropped.append(emotion)
    covered = {target.classes[i] for i in index if i >= 0}
    missing = tuple(c for c in target.classes if c not in covered)
    return LabelMapping(source, target, tuple(index), tuple(dropped), merged, missing)
