"""Decoding image files into uint8 arrays, refusing what is broken or dangerously large."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from ferlab.errors import FerlabError

MAX_PIXELS = 50_000_000
"""Refuse images above this many pixels before decoding (decompression bombs)."""


def image_extensions() -> frozenset[str]:
    """File extensions Pillow can open, lower case with the dot."""
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def open_image(source: str | Path | bytes) -> Image.Image:
    """Open and fully decode an image with EXIF orientation applied.

    Raises FerlabError for missing, empty, non-image, truncated or oversized files.
    """
    name = "uploaded image" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes):
        if not source:
            raise FerlabError(f"{name}: empty file")
        stream: io.BytesIO | Path = io.BytesIO(source)
    else:
        stream = Path(source)
        if not stream.is_file():
            raise FerlabError(f"{name}: no such file")
        if stream.stat().st_size == 0:
            raise FerlabError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise FerlabError(f"{name}: {width}x{height} is larger than the {MAX_PIXELS:,}-pixel limit")
                image.load()
                return ImageOps.exif_transpose(image)
    except FerlabError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FerlabError(f"{name}: refused as a possible decompression bomb ({exc})") from None
    except MemoryError:
        raise FerlabError(f"{name}: too large to decode in the memory available") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on broken or hostile files
        raise FerlabError(f"{name}: not a readable image ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    """An exception as a short one-line reason."""
    text = " ".join(str(exc).split())[:160]
    return text if isinstance(exc, (OSError, ValueError, SyntaxError)) and text else f"{type(exc).__name__}: {text}"


def decoded_array(image: Image.Image, channels: int, name: str = "image") -> np.ndarray:
    """`to_array`, with a FerlabError for a pixel mode that cannot be converted."""
    try:
        return to_array(image, channels)
    except MemoryError:
        raise FerlabError(f"{name}: too large to convert in the memory available") from None
    except Exception as exc:  # noqa: BLE001 - odd modes (LAB, HSV, I;16 variants) fail in many ways
        raise FerlabError(f"{name}: cannot convert its {image.mode} pixels to RGB or gray ({_reason(exc)})") from None


def to_array(image: Image.Image, channels: int) -> np.ndarray:
    """A uint8 (H, W, C) array, C = 1 (gray) or 3 (RGB), from any Pillow mode.

    16-bit, float, palette, CMYK and alpha images are all reduced to 8-bit gray or RGB.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = Image.fromarray(((values - low) * scale).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite transparent pixels onto white, as a viewer would show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    target_mode = "L" if channels == 1 else "RGB"
    array = np.asarray(image.convert(target_mode), dtype=np.uint8)
    return array[:, :, None] if channels == 1 else array


def resize(array: np.ndarray, size: int) -> np.ndarray:
    """Square resize of an (H, W, C) uint8 array, area-averaging when shrinking."""
    height, width = array.shape[:2]
    if (height, width) == (size, size):
        return array
    interpolation = cv2.INTER_AREA if min(height, width) > size else cv2.INTER_LINEAR
    resized = cv2.resize(array, (size, size), interpolation=interpolation)
    return resized.reshape(size, size, array.shape[2])


def read_face_files(
    paths: list[Path], size: int, channels: int, root: Path, describe: str = "decoding"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode many face images into one array, skipping (and reporting) unreadable files.

    Returns images (M, size, size, C), original sizes (M, 2), modes (M,) and the boolean
    mask over `paths` of the files that decoded.
    """
    from tqdm import tqdm

    from ferlab.data.log import warn_skipped
    from ferlab.data.paths import shown

    images = np.empty((len(paths), size, size, channels), dtype=np.uint8)
    sizes = np.zeros((len(paths), 2), dtype=np.int32)
    modes = np.empty(len(paths), dtype=object)
    ok = np.zeros(len(paths), dtype=bool)
    failures: list[str] = []
    for i, path in enumerate(
        tqdm(paths, desc=describe, unit="img", leave=False, disable=True if len(paths) < 2000 else None)
    ):  # None: no bar where stderr is a log file
        try:
            image = open_image(path)
            array = decoded_array(image, channels, str(path))
        except FerlabError:
            failures.append(shown(path.relative_to(root).as_posix()))
            continue
        modes[i] = image.mode
        sizes[i] = (image.height, image.width)
        images[i] = resize(array, size)
        ok[i] = True
    warn_skipped(failures, "unreadable image file", root)
    return images[ok], sizes[ok], modes[ok].astype(str), ok


def as_rgb(image: str | Path | bytes | Image.Image | np.ndarray, bgr: bool = False) -> np.ndarray:
    """Any image a user hands over as an RGB uint8 (H, W, 3) array.

    Paths and bytes are decoded with EXIF orientation applied; PIL images are transposed
    by their EXIF too; arrays may be gray (H, W) or (H, W, 1), RGB or RGBA, or BGR/BGRA
    from OpenCV with `bgr=True`. 16-bit and float arrays are rescaled to 8 bits.
    """
    if isinstance(image, (str, Path, bytes)):
        return decoded_array(open_image(image), 3, "uploaded image" if isinstance(image, bytes) else str(image))
    if isinstance(image, Image.Image):
        try:
            upright = ImageOps.exif_transpose(image)
        except Exception as exc:  # noqa: BLE001 - malformed EXIF
            raise FerlabError(f"cannot read the image's orientation ({_reason(exc)})") from None
        return decoded_array(upright, 3)
    if not isinstance(image, np.ndarray):
        raise FerlabError(f"cannot read an image from a {type(image).__name__}; give a path, bytes, PIL image or array")
    array = image
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or min(array.shape[:2]) < 1:
        raise FerlabError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}")
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise FerlabError(f"a {array.shape[1]}x{array.shape[0]} image is larger than the {MAX_PIXELS:,}-pixel limit")
    if array.dtype.kind not in "biuf":
        raise FerlabError(f"an image array must hold numbers (uint8, uint16, float...), not {array.dtype}")
    if array.dtype != np.uint8:
        values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        high = (
            1.0
            if array.dtype.kind == "f" and values.max() <= 1.0
            else 65535.0
            if array.dtype == np.uint16
            else max(1.0, values.max())
        )
        array = np.clip(values / high * 255, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if bgr:  # OpenCV's swap: 50x faster than NumPy's channel indexing on a 640x480 frame
        swap = cv2.COLOR_BGR2RGB if array.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
        array = cv2.cvtColor(np.ascontiguousarray(array), swap)
    if array.shape[2] == 4:
        return to_array(Image.fromarray(np.ascontiguousarray(array), mode="RGBA"), 3)
    return np.ascontiguousarray(array)
