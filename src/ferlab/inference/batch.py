"""Many image files through the predictor at full speed: decoding, detection and classification
spread over worker threads, each with its own predictor, results in input order.

OpenCV, Pillow's decoders and ONNX Runtime release the GIL, so threads use every core; each
worker owning a predictor means each has its own single-threaded ONNX Runtime session and
detector, and never waits on another's lock. Work is handed out in chunks (one batch of
faces per classifier call) and at most two chunks per worker are in flight, so memory
stays bounded however many files there are.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferlab.data.imageio import as_rgb
from ferlab.errors import FerlabError
from ferlab.inference.predictor import Faces, Predictor


@dataclass
class FileResult:
    path: Path
    faces: Faces | None
    """None when the file could not be read; `error` says why."""
    error: str | None = None
    rgb: np.ndarray | None = None
    """The decoded image, kept only when asked for (to annotate it)."""


def predict_files(
    paths: Sequence[Path],
    make_predictor: Callable[[], Predictor],
    *,
    workers: int = 1,
    chunk: int = 16,
    detect: bool = True,
    keep_images: bool = False,
) -> Iterator[FileResult]:
    """One result per path, in order; unreadable files are results with an error, not exceptions."""
    if workers < 1 or chunk < 1:
        raise FerlabError("workers and chunk must be at least 1")
    local = threading.local()

    def work(part: Sequence[Path]) -> list[FileResult]:
        predictor = getattr(local, "predictor", None)
        if predictor is None:
            predictor = local.predictor = make_predictor()
        results: list[FileResult] = []
        images: list[np.ndarray] = []
        for path in part:
            try:
                images.append(as_rgb(path))
                results.append(FileResult(path, None))
            except FerlabError as exc:
                results.append(FileResult(path, None, str(exc)))
        readable = [r for r in results if r.error is None]
        for result, rgb, faces in zip(readable, images, predictor.predict_many(images, detect=detect)):
            result.faces = faces
            result.rgb = rgb if keep_images else None
        return results

    parts = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    with ThreadPoolExecutor(workers, thread_name_prefix="ferlab-predict") as pool:
        pending: deque[Future[list[FileResult]]] = deque()
        for part in parts:
            pending.append(pool.submit(work, part))
            if len(pending) >= 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
