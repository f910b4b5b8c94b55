"""Static int8 quantisation of an exported model with ONNX Runtime's tools.

Static QDQ quantisation (int8 weights and activations, scaled from calibration faces) runs
ferlab's convolutional networks faster on a CPU for about a tenth of a point of accuracy;
dynamic quantisation, which only quantises matrix products, makes them slower. Weights are
quantised per tensor: per-channel scales cost ferplus8 2.3 points of FER+ test accuracy
(85.30 % against 87.63 % in float32, with MinMax, entropy or percentile calibration alike),
per-tensor scales 0 (87.70 %). Calibration uses training faces, never the faces a model is
scored on.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ferlab.errors import FerlabError
from ferlab.models.bundle import ModelBundle

CALIBRATION_FACES = 300


class _FaceReader:
    """Feeds normalised calibration batches to ONNX Runtime's calibrator, with a progress bar on
    a terminal (calibration runs the network on every batch)."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self._batches = iter(batches)
        self._bar = tqdm(total=sum(map(len, batches)), desc="calibrating int8", unit="face", leave=False, disable=None)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            self._bar.close()
            return None
        self._bar.update(len(batch))
        return {"input": batch}


def quantize_int8(fp32_path: Path, int8_path: Path, calibration: np.ndarray, batch: int = 30) -> Path:
    """Write a static QDQ int8 copy of `fp32_path`, calibrated on normalised float faces (N, C, S, S)."""
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise FerlabError(
            "int8 quantisation needs onnxruntime's quantisation tools: pip install onnx onnxruntime"
        ) from None
    if len(calibration) == 0:
        raise FerlabError("int8 quantisation needs calibration faces")
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=int8_path.parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        staged = Path(scratch) / "int8.onnx"
        batches = [calibration[i : i + batch].astype(np.float32) for i in range(0, len(calibration), batch)]
        quantize_static(
            str(prepared),
            str(staged),
            _FaceReader(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        os.chmod(staged, 0o644)
        os.replace(staged, int8_path)
    return int8_path


def calibration_faces(
    data: str | Path, bundle: ModelBundle, count: int = CALIBRATION_FACES, seed: int = 0
) -> np.ndarray:
    """`count` random faces of a dataset's train split at the model's input (uint8 NHWC)."""
    from ferlab.data.loader import load_dataset
    from ferlab.data.options import LoadOptions

    record = bundle.record
    train = load_dataset(data, options=LoadOptions(size=record.input_size, channels=record.in_channels)).split("train")
    chosen = np.random.default_rng(seed).choice(len(train.labels), min(count, len(train.labels)), replace=False)
    return train.images[np.sort(chosen)]


def export_int8(bundle: ModelBundle, faces: np.ndarray, folder: Path, source: Path) -> tuple[Path, Path]:
    """fp32 and static int8 exports of `bundle` (loaded from the model file `source`) in `folder`,
    with their record (`export_to_folder`), calibrated on `faces`."""
    from ferlab.inference.engine import export_to_folder, normalize
    from ferlab.models.record import file_sha256

    record, fp32 = export_to_folder(bundle, folder, source)
    calibration = normalize(faces, record)
    int8 = quantize_int8(fp32, folder / record.onnx_name("int8"), calibration)
    record.with_facts(
        files={**record.files, "onnx_int8": int8.name}, checksums={**record.checksums, "onnx_int8": file_sha256(int8)}
    ).save(folder)  # the record names both exports
    return fp32, int8
