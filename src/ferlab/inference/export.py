"""`export`: a model as ONNX for other runtimes (and ONNX Runtime here), checked against torch.

`ferlab.export` and `ferlab export` both call `export_model`. The ONNX-vs-torch check and the
int8 branch live here, not in the command, so a script gets exactly what the command does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferlab.errors import FerlabError
from ferlab.models.record import file_sha256
from ferlab.models.shipped import bundle_file, model_label, resolve_model

EXPORT_FORMATS = ("onnx",)


@dataclass(frozen=True)
class Export:
    """What an export wrote, and how it compares with the torch model it came from."""

    onnx: Path
    """The fp32 ONNX file."""
    int8: Path | None = None
    """The static int8 copy (with `int8=True`)."""
    calibration_faces: int = 0
    """How many training faces set the int8 scales."""
    max_difference: float | None = None
    """Largest |logit difference| between the fp32 export and torch on random faces."""
    classes: tuple[str, ...] = ()
    temperature: float = 1.0


def export_model(
    model: str | Path,
    out: str | Path | None = None,
    *,
    format: str = "onnx",
    int8: bool = False,
    calibration: str | Path | None = None,
) -> Export:
    """Export a shipped model, run folder or model.pt as ONNX, checked against torch.

    `out` is a file (default: `./<model>.onnx`, with the model's record beside it as
    `<model>.json`) or an existing folder, where the export is named by the weights' digest beside
    the record, as the runtime finds it. Either can be given wherever a model is named. `int8=True` also
    writes a static int8 copy calibrated on the train split of `calibration` (always into a
    folder: `out`, or the ONNX cache by default), which predict and serve then run.
    """
    from ferlab.inference.engine import (
        LogitEngine,
        OnnxBackend,
        export_onnx,
        export_to_folder,
        onnx_cache_dir,
    )
    from ferlab.models.bundle import load_bundle

    if format not in EXPORT_FORMATS:
        raise FerlabError(f"unknown export format {format!r}; supported: {', '.join(EXPORT_FORMATS)}")
    if int8 and calibration is None:
        raise FerlabError("an int8 export needs calibration=DATA: training faces set the int8 scales")
    path = resolve_model(model)
    bundle = load_bundle(path)
    classes, temperature = bundle.record.classes, bundle.record.temperature
    target = None if out is None else Path(out)
    if int8 and calibration is not None:
        from ferlab.inference.quantize import calibration_faces, export_int8

        faces = calibration_faces(Path(calibration), bundle)
        fp32_path, int8_path = export_int8(bundle, faces, target or onnx_cache_dir(), bundle_file(path))
        return Export(fp32_path, int8_path, len(faces), None, classes, temperature)
    if target is not None and target.is_dir():
        _, fp32 = export_to_folder(bundle, target, bundle_file(path))
    else:
        fp32 = export_onnx(bundle, target or Path.cwd() / f"{model_label(model, path)}.onnx")
        beside = bundle.current_record(bundle_file(path))  # so that the file can be named as the model
        files, checksums = {**beside.files, "onnx": fp32.name}, {**beside.checksums, "onnx": file_sha256(fp32)}
        beside.with_facts(files=files, checksums=checksums).save(fp32.parent, f"{fp32.stem}.json")
    record = bundle.record
    faces = np.random.default_rng(0).integers(
        0, 256, (4, record.input_size, record.input_size, record.in_channels), dtype=np.uint8
    )
    onnx_logits = LogitEngine(OnnxBackend(fp32), record).logits(faces)
    difference = float(np.abs(onnx_logits - LogitEngine.for_bundle(bundle, "torch").logits(faces)).max())
    return Export(fp32, None, 0, difference, classes, temperature)
