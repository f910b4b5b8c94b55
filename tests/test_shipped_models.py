"""Each shipped model's headline figure, measured again on the real test data.

A model card (src/ferlab/weights/<name>.md) states the test accuracy its model reached when
the card was written; these tests load the same test images and evaluate the shipped model
through the public evaluation API, as served (ONNX Runtime, the model's default precision),
and require the card's figure within 0.3 points. The data comes from `.data/` (see the
docs/data.md) or, where that is absent, from the archives in
`../shared/datasets`, of which only the test images are unpacked. Without either the tests
are skipped, saying which files they looked for.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest

from conftest import ROOT, SHARED_DATASETS
from ferlab.data.dataset import FaceDataset
from ferlab.data.loader import load_dataset
from ferlab.evaluation.evaluator import evaluate
from ferlab.inference.predictor import resolve_model
from ferlab.models.bundle import load_bundle

pytestmark = [pytest.mark.real_data, pytest.mark.slow]

TOLERANCE = 0.3
"""Percentage points between the card's accuracy and the one measured now (ONNX or int8 against
the card's float32 torch figure, and a future change of preprocessing, must stay inside it)."""
LOCAL_DATA = ROOT / ".data"


def card_headline(name: str) -> tuple[float, int]:
    """The card's test accuracy in percent and the number of test images it was measured on."""
    text = (ROOT / "src" / "ferlab" / "weights" / f"{name}.md").read_text()
    found = re.search(r"Accuracy \*\*([\d.]+)%\*\* on (\d+) test images", text)
    assert found, f"{name}.md has no 'Accuracy **..%** on N test images' line"
    return float(found[1]), int(found[2])


def _test_images(tmp_path_factory: pytest.TempPathFactory, local: Path, archive_name: str, member_prefix: str) -> Path:
    """`local` when it exists, else the members under `member_prefix` of ../shared/datasets/<archive>."""
    if local.is_dir():
        return local
    archive = SHARED_DATASETS / archive_name
    if not archive.is_file():
        pytest.skip(f"needs the real test images: neither {local} nor {archive} exists (docs/data.md)")
    target = tmp_path_factory.mktemp("real")
    with tarfile.open(archive) as tar:
        tar.extractall(target, members=[m for m in tar if m.name.startswith(member_prefix)], filter="data")
    return target / member_prefix.rstrip("/")


def _load(path: Path, tmp_path_factory: pytest.TempPathFactory) -> FaceDataset:
    with pytest.MonkeyPatch.context() as patch:  # module-scoped: the per-test cache is not set up yet
        patch.setenv("FERLAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        return load_dataset(path)


@pytest.fixture(scope="module")
def ferplus_test(tmp_path_factory: pytest.TempPathFactory) -> FaceDataset:
    """FER+'s FER2013Test with the authors' majority rule: 3,137 images, all in the test split."""
    folder = _test_images(
        tmp_path_factory, LOCAL_DATA / "ferplus" / "FER2013Test", "ferplus.tar.gz", "ferplus/FER2013Test/"
    )
    return _load(folder, tmp_path_factory)


@pytest.fixture(scope="module")
def fer2013_test(tmp_path_factory: pytest.TempPathFactory) -> FaceDataset:
    """FER2013's test/ folder alone: PublicTest (val) and PrivateTest (test), 3,589 images each,
    split by their file-name prefixes (Training, which no test here reads, is left out)."""
    folder = _test_images(tmp_path_factory, LOCAL_DATA / "fer2013" / "test", "fer2013.tar.gz", "fer2013/test/")
    root = tmp_path_factory.mktemp("fer2013")
    (root / "test").symlink_to(folder.resolve(), target_is_directory=True)
    return _load(root, tmp_path_factory)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("ferplus8-robust-40", "ferplus_test"),
        ("ferplus8-blend", "ferplus_test"),
        ("ferplus8", "ferplus_test"),
        ("ferplus8-fast", "ferplus_test"),
        ("ferplus8-robust", "ferplus_test"),
        ("fer2013-7", "fer2013_test"),
        ("five", "fer2013_test"),
    ],
)
def test_shipped_model_reproduces_its_card(name: str, data: str, request: pytest.FixtureRequest) -> None:
    dataset: FaceDataset = request.getfixturevalue(data)
    expected, samples = card_headline(name)
    result = evaluate(load_bundle(resolve_model(name)), dataset, split="test", backend="onnx")
    metrics = result.metrics()
    assert metrics.samples == samples, f"{name}: {metrics.samples} test images, the card has {samples}"
    measured = 100 * metrics.accuracy
    assert abs(measured - expected) <= TOLERANCE, (
        f"{name}: {measured:.2f}% on the test split, the card says {expected}%"
    )
