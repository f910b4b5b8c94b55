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
                bundle.model.eval(), (dummy,), str(temporary), input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
            )
    except Exception as exc:  # exporter failures come in many types
        temporary.unlink(missing_ok=True)
        raise FerlabError(f"ONNX export failed ({type(exc).__name__}: {exc}); is the onnx package installed?") from None
    os.replace(temporary, path)
    return path


def _onnx_cache_path(bundle: ModelBundle) -> Path:
    """A cached export keyed by the weights, so a retrained model never reuses a stale file."""
    digest = hashlib.sha256()
    for key, value in bundle.model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    cache = Path(os.environ.get("FERLAB_CACHE_DIR") or Path.home() / ".cache" / "ferlab") / "onnx"
    return cache / f"{bundle.spec.name}-{digest.hexdigest()[:20]}.onnx"


class OnnxBackend:
    name = "onnx"

    def __init__(self, bundle: ModelBundle, onnx_path: Path | None = None) -> None:
        import onnxruntime as ort

        path = onnx_path or _onnx_cache_path(bundle)
        if not path.is_file():
            export_onnx(bundle, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {"input": batch.numpy()})[0]


def create_backend(bundle: ModelBundle, name: BackendName = "auto") -> Backend:
    """ONNX Runtime when installed (and `auto` or `onnx`), else torch."""
    if name == "torch":
        return TorchBackend(bundle)
    if name not in ("auto", "onnx"):
        raise FerlabError(f"unknown backend {name!r}; use auto, onnx or torch")
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        if name == "onnx":
            raise FerlabError("the onnx backend needs: pip install onnx onnxruntime") from None
        return TorchBackend(bundle)
    return OnnxBackend(bundle)


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
    offsets = [(0, 0), (0, size - crop), (size - crop, 0), (size - crop, size - crop),
               ((size - crop) // 2, (size - crop) // 2)]
    views = []
    for top, left in offsets:
        patch = F.interpolate(batch[:, :, top:top + crop, left:left + crop], size=(size, size),
                              mode="bilinear", align_corners=False)
        views += [patch, patch.flip(-1)]
    return views


class Classifier:
    """A model bundle plus the backend that runs it."""

    def __init__(self, bundle: ModelBundle, backend: BackendName = "torch") -> None:
        self.bundle = bundle
        self.backend = create_backend(bundle, backend)

    def logits(self, faces: np.ndarray, tta: TTA = "none") -> np.ndarray:
        """Uncalibrated logits (N, K) for uint8 faces (N, S, S, C) at the model's input size.

        With test-time augmentation the logits of the views are averaged.
        """
        spec = self.bundle.spec
        expected = (spec.input_size, spec.input_size, spec.in_channels)
        if faces.ndim != 4 or faces.shape[1:] != expected:
            raise FerlabError(f"faces must be (N, {expected[0]}, {expected[1]}, {expected[2]}) uint8, got {faces.shape}")
        outputs = []
        for start in range(0, len(faces), BATCH):
            batch = to_uint8_tensor(faces[start:start + BATCH]).float()
            views = [self.backend(normalize(v, spec.input_mean, spec.input_std)) for v in _views(batch, tta)]
            outputs.append(np.mean(views, axis=0))
        if not outputs:
            return np.zeros((0, spec.num_classes), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32)
