"""Batched classification of face crops: the one place logits are made.

The evaluator and the predictor both go through `LogitEngine`, so a model is evaluated with
exactly the preprocessing and test-time augmentation it is served with. Two backends run
the network: ONNX Runtime (the default when installed: faster on CPU) and torch. A shipped
or cached ONNX export runs from its record (ferlab.models.record) without importing torch
or onnx: this module imports them only where a bundle is run, exported or hashed.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, get_args

import cv2
import numpy as np
from tqdm import tqdm

from ferlab.data.cache import cache_root, writing_cache
from ferlab.errors import FerlabError, is_storage_failure, storage_error, writes_to
from ferlab.inference.choices import BackendName, Precision, check_choices
from ferlab.inference.cpus import usable_cpus
from ferlab.models.batching import FORWARD_BATCH
from ferlab.models.choices import TTA, check_device, check_tta
from ferlab.models.record import ModelRecord, OnnxPrecision, file_sha256, record_beside

if TYPE_CHECKING:
    from ferlab.models.bundle import ModelBundle

logger = logging.getLogger("ferlab.inference")


def served_tta(recorded: str | None) -> TTA:
    """The test-time augmentation a model records that it is served with (`train.tta`): none
    for models made before it; an unknown value is refused rather than silently dropped."""
    value = recorded or "none"
    if value not in get_args(TTA):
        raise FerlabError(f"the model asks for test-time augmentation {value!r}, which this ferlab does not know")
    return cast(TTA, value)


BATCH = FORWARD_BATCH
TENCROP_SCALE = 0.9
VIEW_COUNT: dict[TTA, int] = {"none": 1, "flip": 2, "tencrop": 10}
"""How many views `_views` makes of each face (sizes the chunks that go through in one call)."""


def normalize(faces: np.ndarray, record: ModelRecord) -> np.ndarray:
    """uint8 (N, S, S, C) faces -> float32 (N, C, S, S) network input, normalised as the record
    says (`(x / 255 - mean) / std` per channel, as ferlab.data.tensors.normalize)."""
    batch = faces.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    channels = record.in_channels
    mean = np.broadcast_to(np.asarray(record.input_mean, np.float32), (channels,)).reshape(1, -1, 1, 1)
    std = np.broadcast_to(np.asarray(record.input_std, np.float32), (channels,)).reshape(1, -1, 1, 1)
    return (batch - mean) / std


class Backend(Protocol):
    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a normalised float32 (N, C, S, S) batch."""
        ...


def onnx_cuda_available() -> bool:
    """ONNX Runtime's CUDA provider is there (the `onnxruntime-gpu` package, ferlab[gpu])."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


class TorchBackend:
    name = "torch"

    def __init__(self, bundle: ModelBundle, device: str = "cpu") -> None:
        import torch

        check_device(device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise FerlabError(f"device {device}: torch sees no CUDA GPU here")
        if device == "mps" and not torch.backends.mps.is_available():
            raise FerlabError("device mps: torch sees no Apple GPU here")
        self.device = torch.device(device)
        self.model = bundle.model.eval().to(self.device)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            inputs = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
            return self.model(inputs).float().cpu().numpy()


class OnnxBackend:
    """ONNX Runtime on one exported file with `threads` intra-op threads per call (default 1: two
    threads per call collapse under load on a busy 2-core machine, so servers spread calls over
    workers instead)."""

    name = "onnx"

    def __init__(
        self, path: Path, threads: int | None = 1, device: str = "cpu", record: ModelRecord | None = None
    ) -> None:
        """`record`, when given, says what the model takes and gives: an export made for another
        model (other input or class count) is refused as a `DamagedExport`, as is one whose
        sha256 differs from the one its record holds or that ONNX Runtime cannot read."""
        import onnxruntime as ort

        kind, _, index = check_device(device).partition(":")
        providers: list[Any] = ["CPUExecutionProvider"]
        if kind == "cuda" and onnx_cuda_available():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(index or 0)}))
        elif kind != "cpu":
            raise FerlabError(
                f"device {device}: ONNX Runtime runs there with onnxruntime-gpu (pip install 'ferlab[gpu]')"
            )
        self.path = path
        self.precision: OnnxPrecision = "int8" if path.name.endswith(".int8.onnx") else "fp32"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or usable_cpus()
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False  # the arena keeps its peak for good: a photo of many faces would pin it
        _check_recorded(path)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001  (InvalidProtobuf, Fail, NoSuchFile...: ORT's own types)
            reason = " ".join(str(exc).split())[:120]
            raise DamagedExport(path, f"ONNX Runtime cannot read it: {type(exc).__name__}: {reason}") from None
        if record is not None:
            _check_shapes(self.session, path, record)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": batch})[0]


class DamagedExport(FerlabError):
    """An ONNX file that cannot serve its model: damaged, cut short, or another model's."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        where = "reinstall ferlab" if path.parent == SHIPPED_ONNX_DIR else "delete it and ferlab rebuilds it"
        super().__init__(f"{path}: not a usable ONNX export ({reason}); {where}")


def _export_role(path: Path) -> tuple[str, Path]:
    """An export's role in its model record (onnx or onnx_int8) and the record's path beside it."""
    return ("onnx_int8" if path.name.endswith(".int8.onnx") else "onnx"), record_beside(path)


def _check_recorded(path: Path) -> None:
    """The file has the sha256 that the model record beside it holds for it (where it holds one)."""
    role, record_path = _export_role(path)
    try:
        record = ModelRecord.load(record_path) if record_path.is_file() else None
    except FerlabError:
        return  # a damaged record is the record's problem; the file itself is still checked below
    if record is None or record.files.get(role) != path.name or role not in record.checksums:
        return
    if file_sha256(path) != record.checksums[role]:
        raise DamagedExport(path, f"{path.stat().st_size:,} bytes whose sha256 differs from its record's")


def record_export(path: Path) -> None:
    """Name a cached export and its sha256 in the model record beside it, if there is one: an
    export rebuilt after its record was written is verified like the rest."""
    role, record_path = _export_role(path)
    try:
        record = ModelRecord.load(record_path) if record_path.is_file() else None
    except FerlabError:
        return
    if record is not None:
        record.with_facts(
            files={**record.files, role: path.name}, checksums={**record.checksums, role: file_sha256(path)}
        ).save(path.parent)


def _check_shapes(session: Any, path: Path, record: ModelRecord) -> None:
    """The graph takes (N, C, S, S) and gives (N, K) for this model's C, S and K."""
    shape_in = list(session.get_inputs()[0].shape)
    shape_out = list(session.get_outputs()[0].shape)
    want_in = [record.in_channels, record.input_size, record.input_size]
    if len(shape_in) != 4 or shape_in[1:] != want_in or len(shape_out) != 2 or shape_out[1] != record.num_classes:
        raise DamagedExport(
            path,
            f"made for another model: it takes {shape_in[1:]} and gives {shape_out[1:]}, this model takes "
            f"{want_in} and gives [{record.num_classes}]",
        )


def set_aside(path: Path) -> None:
    """Move a damaged cached export out of the way (kept as `.damaged` for a look), so it is rebuilt."""
    with writing_cache():
        path.replace(path.with_name(path.name + ".damaged"))
    logger.warning("set aside the damaged export %s (kept as %s.damaged); rebuilding it", path, path.name)


def in_cache(path: Path) -> bool:
    return path.parent == onnx_cache_dir()


def export_onnx(bundle: ModelBundle, path: Path) -> Path:
    """Write the network as ONNX (legacy TorchScript exporter; needs the `onnx` package)."""
    import torch

    record = bundle.record
    dummy = torch.zeros(1, record.in_channels, record.input_size, record.input_size)
    with writes_to(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".onnx.tmp", delete=False) as handle:
            temporary = Path(handle.name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is chosen on purpose
            # The exporter passes FerModel.forward's `both=False` as a traced constant: the export
            # serves the first head alone, which is what is wanted, so its warning says nothing.
            warnings.filterwarnings("ignore", "Converting a tensor to a Python boolean", torch.jit.TracerWarning)
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
        os.chmod(temporary, 0o644)  # temporary files are private (0600); the export is an ordinary, readable file
        os.replace(temporary, path)
    except BaseException as exc:  # Ctrl-C included: no 0-byte .onnx.tmp is left in the folder
        temporary.unlink(missing_ok=True)
        if is_storage_failure(exc):
            raise storage_error(exc, path) from None
        if isinstance(exc, ImportError):
            raise FerlabError(f"ONNX export needs the onnx package ({exc}): pip install onnx") from None
        if not isinstance(exc, Exception):
            raise
        reason = " ".join(str(exc).split())[:200]
        raise FerlabError(f"ONNX export of {path.name} failed ({type(exc).__name__}: {reason})") from None
    return path


def export_to_folder(bundle: ModelBundle, folder: Path, source: Path) -> tuple[ModelRecord, Path]:
    """The fp32 export of `bundle` (loaded from the model file `source`) in `folder`, named by
    the weights' digest, with its record: the layout the runtime finds (the package's
    weights/onnx or the cache) and runs without torch."""
    record = bundle.current_record(source)
    fp32 = export_onnx(bundle, folder / record.onnx_name("fp32"))
    record = record.with_facts(
        files={**record.files, "weights": source.name, "onnx": fp32.name},
        checksums={**record.checksums, "onnx": file_sha256(fp32)},
    )
    record.save(folder)
    return record, fp32


SHIPPED_ONNX_DIR = Path(__file__).resolve().parent.parent / "weights" / "onnx"
"""Exports that ship with the package, with their records, named like the cache by the
weights' digest: a shipped model never needs torch or the exporter, and its int8 copy was
calibrated on training faces."""


def onnx_cache_dir() -> Path:
    return cache_root() / "onnx"


def export_folders(beside: Path | None = None) -> list[Path]:
    """Where exports and records are looked for: `beside` (the folder of a record a user named)
    first, then the shipped ones, then the cache."""
    return [*([beside] if beside is not None else []), SHIPPED_ONNX_DIR, onnx_cache_dir()]


def find_onnx(name: str, beside: Path | None = None) -> Path | None:
    """The export with this file name in `export_folders(beside)`, if there is one."""
    for folder in export_folders(beside):
        if (folder / name).is_file():
            return folder / name
    return None


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def exported_file(
    record: ModelRecord, precision: Precision, device: str = "cpu", beside: Path | None = None
) -> Path | None:
    """The export to run at `precision`: int8 where one exists (auto, on the CPU: int8 QDQ graphs
    are made for it) or is asked for, else fp32."""
    if precision == "int8" or (precision == "auto" and device == "cpu"):
        int8 = find_onnx(record.onnx_name("int8"), beside)
        if int8 is not None or precision == "int8":
            return int8
    return find_onnx(record.onnx_name("fp32"), beside)


class MissingExport(FerlabError):
    """A record names an fp32 export that is neither shipped nor cached (the weights can make it)."""


def _missing_int8(arch: str) -> FerlabError:
    return FerlabError(
        f"no int8 export of this {arch} model; make one with "
        "`ferlab export --model MODEL --int8 --calibration TRAINING_DATA` (or use --precision fp32)"
    )


def create_backend(
    bundle: ModelBundle,
    name: BackendName = "auto",
    precision: Precision = "auto",
    threads: int | None = 1,
    source: Path | None = None,
    device: str = "cpu",
) -> Backend:
    """ONNX Runtime when installed (and `auto` or `onnx`), else torch; int8 where an int8 export exists.

    On a GPU (`device` cuda), `auto` takes ONNX Runtime's CUDA provider where onnxruntime-gpu
    is installed, else torch. A missing fp32 export is made in the cache; with `source`, the
    model file the bundle was loaded from, a record goes next to it so that the next load of
    that file skips torch.
    """
    check_choices(name, precision)
    on_cpu = check_device(device) == "cpu"
    if name == "torch" or (name == "auto" and not on_cpu and not onnx_cuda_available()):
        return TorchBackend(bundle, device)
    if not onnxruntime_available():
        if name == "onnx" or precision == "int8":
            raise FerlabError("the onnx backend needs: pip install onnx onnxruntime") from None
        return TorchBackend(bundle, device)
    record = bundle.current_record(source)  # the weights as they are now name the export
    while True:  # a damaged cached export is set aside and the next best one (or a fresh export) taken
        path = exported_file(record, precision, device)
        fresh = path is None
        if path is None and precision == "int8":
            raise _missing_int8(record.arch)
        with writing_cache():
            if path is None:
                path = export_onnx(bundle, onnx_cache_dir() / record.onnx_name("fp32"))
                record_export(path)  # renew the checksum a record already in the cache holds for it
            if source is not None and not any((folder / record.file_name).is_file() for folder in export_folders()):
                record.save(onnx_cache_dir())
                if in_cache(path):
                    record_export(path)
        try:
            return OnnxBackend(path, threads, device, record)
        except DamagedExport:
            if fresh or not in_cache(path):
                raise
            set_aside(path)


def _resize_stack(batch: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of every (N, C) plane of a float32 batch at once (half-pixel centres,
    as torch's `interpolate(..., align_corners=False)`)."""
    n, c, h, w = batch.shape
    planes = np.ascontiguousarray(batch.reshape(n * c, h, w).transpose(1, 2, 0))
    chunks = [
        cv2.resize(planes[:, :, i : i + 512], (size, size), interpolation=cv2.INTER_LINEAR).reshape(size, size, -1)
        for i in range(0, n * c, 512)  # OpenCV resizes at most 512 channels per call
    ]
    return np.concatenate(chunks, axis=2).transpose(2, 0, 1).reshape(n, c, size, size)


def _views(batch: np.ndarray, tta: TTA) -> list[np.ndarray]:
    """The test-time views of a float (N, C, S, S) batch, each at size S."""
    if tta == "none":
        return [batch]
    if tta == "flip":
        return [batch, np.ascontiguousarray(batch[..., ::-1])]
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
        patch = _resize_stack(batch[:, :, top : top + crop, left : left + crop], size)
        views += [patch, np.ascontiguousarray(patch[..., ::-1])]
    return views


class LogitEngine:
    """A network behind a backend, and the record that says what input it takes."""

    def __init__(self, backend: Backend, record: ModelRecord) -> None:
        self.backend = backend
        self.record = record

    @classmethod
    def for_bundle(
        cls,
        bundle: ModelBundle,
        backend: BackendName = "torch",
        precision: Precision = "fp32",
        threads: int | None = 1,
        source: Path | None = None,
        device: str = "cpu",
    ) -> LogitEngine:
        return cls(create_backend(bundle, backend, precision, threads, source, device), bundle.record)

    @classmethod
    def for_export(
        cls,
        record: ModelRecord,
        precision: Precision = "auto",
        threads: int | None = 1,
        device: str = "cpu",
        beside: Path | None = None,
    ) -> LogitEngine:
        """Run an export of the model through ONNX Runtime, without torch: the one in `beside`
        (the folder of the record a user named), else a shipped or cached one."""
        while True:  # a damaged cached export is set aside: the next best one, or MissingExport (rebuilt)
            path = exported_file(record, precision, check_device(device), beside)
            if path is None:
                if precision == "int8":
                    raise _missing_int8(record.arch)
                where = f"{beside} and {onnx_cache_dir()}" if beside is not None else str(onnx_cache_dir())
                raise MissingExport(f"the export {record.onnx_name('fp32')} is missing from {where}")
            try:
                return cls(OnnxBackend(path, threads, device, record), record)
            except DamagedExport:
                if not in_cache(path):
                    raise
                set_aside(path)

    def logits(self, faces: np.ndarray, tta: TTA = "none", progress: str | None = None) -> np.ndarray:
        """Uncalibrated logits (N, K) for uint8 faces (N, S, S, C) at the model's input size.

        With test-time augmentation the logits of the views are averaged. `progress` names a
        progress bar on a terminal (a dataset's worth of faces takes a minute on a CPU).
        """
        check_tta(tta)
        record = self.record
        expected = (record.input_size, record.input_size, record.in_channels)
        if faces.ndim != 4 or faces.shape[1:] != expected:
            raise FerlabError(
                f"faces must be (N, {expected[0]}, {expected[1]}, {expected[2]}) uint8, got {faces.shape}"
            )
        outputs = []
        step = max(1, BATCH // VIEW_COUNT[tta])  # the views of a chunk go through in one call
        bar = tqdm(total=len(faces), desc=progress, unit="face", leave=False, disable=None if progress else True)
        with bar:
            for start in range(0, len(faces), step):
                batch = normalize(faces[start : start + step], record)
                views = _views(batch, tta)
                logits = self.backend(np.concatenate(views))
                outputs.append(logits.reshape(len(views), len(batch), -1).mean(axis=0))
                bar.update(len(batch))
        if not outputs:
            return np.zeros((0, record.num_classes), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32)
