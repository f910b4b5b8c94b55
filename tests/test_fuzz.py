"""Generated inputs against the image decoder, the config builder and the REST API.

Property-based (hypothesis) and OpenAPI-driven (schemathesis, in-process against the app's
own schema). Each asserts the one contract every front end relies on: a result, or one
clear error (a FerlabError of one line, a 4xx JSON error) — never a traceback, never a 5xx.
Example counts are fixed and the database is off, so a run is bounded and repeatable
enough for CI; docs/reliability.md lists what is tried.
"""

from __future__ import annotations

import io
import string

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from schemathesis import GenerationMode

from ferlab.apps.api import ApiError, check_image_size, create_app
from ferlab.data.imageio import as_rgb
from ferlab.errors import FerlabError
from ferlab.inference.predictor import Predictor
from ferlab.labels import LabelSet
from ferlab.models.bundle import ModelBundle
from ferlab.models.registry import create_model
from ferlab.training.config import RANGES, ExperimentConfig, build_config, parse_overrides, read_config_file

BOUNDED = settings(
    max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def small(max_examples: int) -> settings:
    return settings(BOUNDED, max_examples=max_examples)


def assert_one_line(error: Exception) -> None:
    message = str(error)
    assert message and "\n" not in message and "Traceback" not in message, repr(message)


# -- image decoding -------------------------------------------------------------------------------

FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "ICO", "PPM"]
MODES = ["L", "RGB", "RGBA", "P", "1", "I;16", "I", "F", "CMYK", "LA"]


@st.composite
def encoded_images(draw: st.DrawFn) -> bytes:
    """A small real image file in a random format and mode, then possibly damaged."""
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    mode, fmt = draw(st.sampled_from(MODES)), draw(st.sampled_from(FORMATS))
    seed = draw(st.integers(0, 2**16))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    image = (
        Image.fromarray(pixels, "RGBA").convert(mode)
        if mode not in ("I;16", "I", "F")
        else Image.fromarray(pixels[:, :, 0]).convert("I" if mode != "F" else "F")
    )
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError, TypeError):
        image.convert("RGB").save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    damage = draw(st.sampled_from(["none", "truncate", "flip", "splice"]))
    if damage == "truncate" and len(data) > 1:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip" and data:
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif damage == "splice":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=64))
    return bytes(data)


def decodes_or_refuses(data: bytes) -> None:
    try:
        rgb = as_rgb(data)
    except FerlabError as error:
        assert_one_line(error)
    else:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and min(rgb.shape[:2]) >= 1
    try:
        check_image_size(data, 25_000_000)
    except ApiError as error:
        assert 400 <= error.status < 500 and "\n" not in error.message


@small(200)
@given(st.binary(max_size=512))
def test_random_bytes_decode_or_give_one_clear_error(data: bytes) -> None:
    decodes_or_refuses(data)


@small(250)
@given(encoded_images())
def test_real_and_damaged_image_files_decode_or_give_one_clear_error(data: bytes) -> None:
    decodes_or_refuses(data)


@small(200)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.bool_]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
    ),
    st.booleans(),
)
def test_arrays_of_any_shape_and_dtype_convert_or_give_one_clear_error(array: np.ndarray, bgr: bool) -> None:
    try:
        rgb = as_rgb(array, bgr=bgr)
    except FerlabError as error:
        assert_one_line(error)
    else:
        assert rgb.dtype == np.uint8 and rgb.shape == (*array.shape[:2], 3)


# -- the config builder -----------------------------------------------------------------------------

DEFAULTS = build_config({"name": "x", "data": {"path": "x"}}).flat()
KEYS = sorted(DEFAULTS) + ["train.lrate", "model.params.width", "data", "train", "name"]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["3e-4", "1E5", ".inf", "..", "../x", "adam", "both", "votes"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def nested(flat: dict[str, object]) -> dict[str, object]:
    tree: dict[str, object] = {}
    for dotted, value in flat.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[leaf] = value
    return tree


def builds_or_refuses(values: dict[str, object], overrides: list[str] | None = None) -> None:
    try:
        config = build_config(values, overrides)
    except FerlabError as error:
        assert_one_line(error)
        return
    assert isinstance(config, ExperimentConfig)
    flat = config.flat()
    for key, allowed in RANGES.items():
        assert flat[key] is None or flat[key] in allowed, (key, flat[key])
    assert "/" not in config.name and ".." not in config.name


@pytest.mark.slow
@small(300)
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_any_config_values_build_a_valid_config_or_give_one_clear_error(changes: dict[str, object]) -> None:
    builds_or_refuses(nested({"name": "run", "data.path": "somewhere", **changes}))


@small(200)
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.text(string.printable, max_size=16)), max_size=4))
def test_any_set_overrides_build_a_valid_config_or_give_one_clear_error(pairs: list[tuple[str, str]]) -> None:
    overrides = [f"{key}={raw}" for key, raw in pairs]
    try:
        parse_overrides(overrides)
    except FerlabError as error:
        assert_one_line(error)
        return
    builds_or_refuses({"name": "run", "data": {"path": "x"}}, overrides)


@small(100)
@given(st.text(max_size=200), st.sampled_from([".yaml", ".toml"]))
def test_any_config_file_text_reads_or_gives_one_clear_error(
    tmp_path_factory: pytest.TempPathFactory, text: str, suffix: str
) -> None:
    path = tmp_path_factory.mktemp("cfg") / f"exp{suffix}"
    path.write_text(text, encoding="utf-8")
    try:
        values = read_config_file(path)
    except FerlabError as error:
        assert_one_line(error)
        return
    builds_or_refuses({**values, "name": "run"} if isinstance(values, dict) else values)


# -- the REST API against its own OpenAPI schema ------------------------------------------------------


@pytest.fixture(scope="module")
def api_schema() -> schemathesis.schemas.BaseSchema:
    """The real app around an untrained three-class model (no training needed to fuzz HTTP)."""
    bundle = ModelBundle.of(
        create_model("baseline_cnn", 3, input_size=24).eval(), LabelSet("fuzz", ("angry", "happy", "sad"))
    )
    app = create_app(
        Predictor(bundle, detector="haar", backend="torch"),
        max_upload_bytes=256 * 1024,
        body_idle_timeout=5,
        body_timeout=10,
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@small(80)
@given(data=st.data())
def test_the_api_answers_every_generated_request_without_a_server_error(
    api_schema: schemathesis.schemas.BaseSchema,
    mode: GenerationMode,
    data: st.DataObject,
) -> None:
    """Requests drawn from the app's own OpenAPI schema, valid (positive) or violating it
    (negative), for every operation; sent in-process to the ASGI app."""
    case = data.draw(api_schema.as_strategy(mode), label="request")
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error", "detail"} and "\n" not in body["detail"], body
