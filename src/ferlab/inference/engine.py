"""Batched classification of face crops: the one place logits are made.

The evaluator and the predictor both go through `Classifier`, so a model is evaluated with
exactly the preprocessing and test-time augmentation it is served with. Two backends run
the network: ONNX Runtime (the default when installed: faster on CPU) and torch.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ferlab.data.tensors import normalize, to_uint8_tensor
from ferlab.errors import FerlabError
from ferlab.models.bundle import ModelBundle

TTA = Literal["none", "flip", "tencrop"]
BackendName = Literal["auto", "onnx", "torch"]
BATCH = 256
TENCROP_SCALE = 0.9


class Backend(Protocol):
    name: str

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        """Logits for a normalised float (N, C, S, S) batch."""
        ...


class TorchBackend:
    name = "torch"

    def __init__(self, bundle: ModelBundle) -> None:
        self.model = bundle.model.eval()

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        return self.model(batch).float().numpy()


def export_onnx(bundle: ModelBundle, path: Path) -> Path:
    """Write the network as ONNX (legacy TorchScript exporter; needs the `onnx` package)."""
    spec = bundle.spec
    dummy = torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".onnx.tmp", delete=False) as handle:
        temporary = Path(handle.name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is chosen on purpose
            torch.onnx.export(
                bundle.model.eval(),
                (dummy,),
                str(temporary),
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
    except Exception as exc:  # exporter failures come in many types
        temporary.unlink(missing_ok=True)
        raise FerlabError(f"ONNX export failed ({type(exc).__name__}: {exc}); is the onnx package installed?") from None
    os.chmod(temporary, 0o644)  # temporary files are private (0600); the export is an ordinary, readable file
    os.replace(temporary, path)
    return path


Precision = Literal["auto", "fp32", "int8"]
SHIPPED_ONNX_DIR = Path(__file__).resolve().parent.parent / "weights" / "onnx"
"""Exports that ship with the package, named like the cache by the weights' digest: a
shipped model never needs the exporter, and its int8 copy was calibrated on training faces."""


def weights_digest(bundle: ModelBundle) -> str:
    digest = hashlib.sha256()
    for key, value in bundle.model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:20]


def onnx_cache_dir() -> Path:
    return Path(os.environ.get("FERLAB_CACHE_DIR") or Path.home() / ".cache" / "ferlab") / "onnx"


def onnx_file_name(bundle: ModelBundle, precision: Literal["fp32", "int8"], digest: str | None = None) -> str:
    """`<arch>-<weights digest>.onnx` (fp32) or `.int8.onnx`: a retrained model never reuses a stale file."""
    stem = f"{bundle.spec.name}-{digest or weights_digest(bundle)}"
    return stem + (".int8.onnx" if precision == "int8" else ".onnx")


def find_onnx(name: str) -> Path | None:
    """The shipped or cached export with this file name, if there is one."""
    for folder in (SHIPPED_ONNX_DIR, onnx_cache_dir()):
        if (folder / name).is_file():
            return folder / name
    return None


class OnnxBackend:
    """ONNX Runtime with `threads` intra-op threads per call (default 1: two threads per call
    collapse under load on a busy 2-core machine, so servers spread calls over workers instead)."""

    name = "onnx"

    def __init__(self, bundle: ModelBundle, precision: Precision = "auto", threads: int | None = 1) -> None:
        import onnxruntime as ort

        digest = weights_digest(bundle)
        path = find_onnx(onnx_file_name(bundle, "int8", digest)) if precision in ("auto", "int8") else None
        if path is None and precision == "int8":
            raise FerlabError(
                f"no int8 export of this {bundle.spec.name} model; make one with "
                "`ferlab export MODEL --int8 --calibration TRAINING_DATA` (or use precision fp32)"
            )
        if path is None:
            fp32_name = onnx_file_name(bundle, "fp32", digest)
            path = find_onnx(fp32_name) or export_onnx(bundle, onnx_cache_dir() / fp32_name)
        self.precision = "int8" if path.name.endswith(".int8.onnx") else "fp32"
        self.path = path
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {"input": batch.numpy()})[0]


def create_backend(
    bundle: ModelBundle, name: BackendName = "auto", precision: Precision = "auto", threads: int | None = 1
) -> Backend:
    """ONNX Runtime when installed (and `auto` or `onnx`), else torch; int8 where an int8 export exists."""
    if name not in ("auto", "onnx", "torch"):
        raise FerlabError(f"unknown backend {name!r}; use auto, onnx or torch")
    if precision not in ("auto", "fp32", "int8"):
        raise FerlabError(f"unknown precision {precision!r}; use auto, fp32 or int8")
    if name == "torch":
        if precision == "int8":
            raise FerlabError("int8 runs on the onnx backend only")
        return TorchBackend(bundle)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if name == "onnx" or precision == "int8":
            raise FerlabError("the onnx backend needs: pip install onnx onnxruntime") from None
        return TorchBackend(bundle)
    return OnnxBackend(bundle, precision, threads)


def _views(batch: torch.Tensor, tta: TTA) -> list[torch.Tensor]:
    """The test-time views of a float (N, C, S, S) batch, each at size S."""
    if tta == "none":
        return [batch]
    if tta == "flip":
        return [batch, batch.flip(-1)]
    if tta != "tencrop":
        raise FerlabError(f"unknown test-time augmentation {tta!r}; use none, flip or tencrop")
    size = batch.shape[-1]
    crop = max(2, round(size * TENCROP_SCALE))
    offsets = [
        (0, 0),
        (0, size - crop),
        (size - crop, 0),
        (size - crop, size - crop),
        ((size - crop) // 2, (size - crop) // 2),
    ]
    views = []
    for top, left in offsets:
        patch = F.interpolate(
            batch[:, :, top : top + crop, left : left + crop], size=(size, size), mode="bilinear", align_corners=False
        )
        views += [patch, patch.flip(-1)]
    return views


class Classifier:
    """A model bundle plus the backend that runs it."""

    def __init__(
        self,
        bundle: ModelBundle,
        backend: BackendName = "torch",
        precision: Precision = "fp32",
        threads: int | None = 1,
    ) -> None:
        self.bundle = bundle
        self.backend = create_backend(bundle, backend, precision, threads)

    def logits(self, faces: np.ndarray, tta: TTA = "none") -> np.ndarray:
        """Uncalibrated logits (N, K) for uint8 faces (N, S, S, C) at the model's input size.

        With test-time augmentation the logits of the views are averaged.
        """
        spec = self.bundle.spec
        expected = (spec.input_size, spec.input_size, spec.in_channels)
        if faces.ndim != 4 or faces.shape[1:] != expected:
            raise FerlabError(
                f"faces must be (N, {expected[0]}, {expected[1]}, {expected[2]}) uint8, got {faces.shape}"
            )
        outputs = []
        for start in range(0, len(faces), BATCH):
            batch = to_uint8_tensor(faces[start : start + BATCH]).float()
            views = [self.backend(normalize(v, spec.input_mean, spec.input_std)) for v in _views(batch, tta)]
            outputs.append(np.mean(views, axis=0))
        if not outputs:
            return np.zeros((0, spec.num_classes), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32)
