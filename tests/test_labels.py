import pytest

from conftest import fails_with
from ferlab.errors import FerlabError
from ferlab.labels import FER2013, FERPLUS, FIVE, canonical_emotion, get_label_set, label_set_for, map_labels


@pytest.mark.parametrize(
    "raw, canonical",
    [
        ("Anger", "angry"),
        ("HAPPINESS", "happy"),
        ("sadness", "sad"),
        ("Suprise", "surprise"),
        ("3_happy", "happy"),
        ("neutral ", "neutral"),
        ("Contempt", "contempt"),
    ],
)
def test_synonyms_map_to_one_canonical_name(raw: str, canonical: str) -> None:
    assert canonical_emotion(raw) == canonical


def test_unknown_name_lists_known_names() -> None:
    with fails_with(FerlabError, "'boredom'", "angry"):  # the name given, a known one
        canonical_emotion("boredom")


def test_label_sets_follow_their_sources_order() -> None:
    assert FER2013.classes[3] == "happy" and FER2013.classes[6] == "neutral"
    assert FERPLUS.classes[:3] == ("neutral", "happy", "surprise") and len(FERPLUS) == 8
    assert FIVE.classes == ("angry", "fear", "happy", "sad", "surprise")
    assert FERPLUS.index("happiness") == 1
    assert get_label_set("five") is FIVE
    with pytest.raises(FerlabError, match="unknown label set"):
        get_label_set("six")


def test_mapping_states_dropped_and_missing_classes() -> None:
    mapping = map_labels(FERPLUS, FER2013)
    assert mapping.dropped == ("contempt",)
    assert mapping.index[FERPLUS.index("happy")] == FER2013.index("happy")
    assert mapping.index[FERPLUS.index("contempt")] == -1
    assert "dropped: contempt" in mapping.describe()

    to_five = map_labels(FER2013, FIVE)
    assert set(to_five.dropped) == {"disgust", "neutral"}
    assert to_five.missing == ()

    from_five = map_labels(FIVE, FER2013)
    assert set(from_five.missing) == {"disgust", "neutral"}


def test_mapping_merges_explicitly() -> None:
    mapping = map_labels(FERPLUS, FER2013, merge={"contempt": "disgust"})
    assert mapping.dropped == ()
    assert mapping.index[FERPLUS.index("contempt")] == FER2013.index("disgust")
    assert "merged: contempt into disgust" in mapping.describe()
    with pytest.raises(FerlabError, match="not in five"):
        map_labels(FERPLUS, FIVE, merge={"contempt": "disgust"})


def test_folder_classes_pick_a_known_set_or_a_canonical_custom_one() -> None:
    assert label_set_for(set(FIVE.classes)) is FIVE
    custom = label_set_for({"surprise", "angry", "happy"})
    assert custom.classes == ("angry", "happy", "surprise")
