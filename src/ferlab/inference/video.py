"""Video and webcam: per-frame predictions with face tracking and temporal smoothing."""

from __future__ import annotations

import contextlib
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ferlab.errors import FerlabError
from ferlab.inference.annotate import FaceLabel, draw, title
from ferlab.inference.predictor import Predictor
from ferlab.inference.tracking import SMOOTHING, FaceTracker, Track


@dataclass
class VideoSummary:
    frames: int
    processed: int
    frames_with_faces: int
    faces: int
    seconds: float
    files: list[Path]


def _open(source: str | int) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f"camera {source}" if isinstance(source, int) else f"video {source}"
        raise FerlabError(
            f"cannot open {what}" + ("" if isinstance(source, int) else ": missing, or not a video OpenCV can decode")
        )
    return capture


def draw_tracks(rgb: np.ndarray, tracker: FaceTracker, tracks: list[Track], threshold: float, top: int = 3) -> None:
    """Draw each tracked face's box, id, smoothed label and score, and its runners-up, in place."""
    labels = []
    for track in tracks:
        label, confidence = tracker.label(track)
        ranked = sorted(zip(tracker.classes, track.probabilities.tolist()), key=lambda kv: -kv[1])
        labels.append(
            FaceLabel(track.box, title(f"#{track.face_id}", label, confidence), ranked, confidence < threshold)
        )
    draw(rgb, labels, top)


def process_video(
    predictor: Predictor, path: Path, out_dir: Path, every: int = 1, smoothing: float = SMOOTHING
) -> VideoSummary:
    """Write frames.csv, annotated.mp4 and emotions.png for a video file."""
    if every < 1:
        raise FerlabError("--every must be at least 1")
    if not path.is_file():
        raise FerlabError(f"{path}: no such video file")
    capture = _open(str(path))
    ok, bgr = capture.read()  # a file that opens but decodes nothing must not touch an earlier run's output
    if not ok:
        capture.release()
        raise FerlabError(f"{path}: no frame could be decoded")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    height, width = bgr.shape[:2]
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, video_path, plot_path = out_dir / "frames.csv", out_dir / "annotated.mp4", out_dir / "emotions.png"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        capture.release()
        raise FerlabError(f"{video_path}: OpenCV cannot write a {width}x{height} mp4v video here")
    tracker = FaceTracker(predictor.classes, smoothing=smoothing)
    classes = predictor.classes
    started = time.perf_counter()
    frame_index = processed = with_faces = n_faces = 0
    tracks: list[Track] = []
    timeline: dict[int, list[tuple[float, np.ndarray]]] = {}
    try:
        with csv_path.open("w", newline="") as handle:
            rows = csv.writer(handle)
            rows.writerow(["frame", "time_s", "face_id", "x", "y", "w", "h", "label", "confidence", *classes])
            bar = tqdm(total=total, desc=path.name, unit="frame", disable=None)
            while ok:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                seconds = frame_index / fps
                if frame_index % every == 0:
                    faces = predictor.predict(rgb)
                    tracks = tracker.update(list(faces))
                    processed += 1
                    with_faces += bool(faces)
                    n_faces += len(faces)
                    for track in tracks:
                        label, confidence = tracker.label(track)
                        rows.writerow(
                            [
                                frame_index,
                                f"{seconds:.3f}",
                                track.face_id,
                                *track.box,
                                label,
                                f"{confidence:.4f}",
                                *(f"{p:.4f}" for p in track.probabilities),
                            ]
                        )
                        timeline.setdefault(track.face_id, []).append((seconds, track.probabilities.copy()))
                draw_tracks(rgb, tracker, tracks, predictor.uncertain_below)
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                frame_index += 1
                bar.update(1)
                ok, bgr = capture.read()
            bar.close()
    finally:
        capture.release()
        writer.release()
    plot_timeline(timeline, classes, plot_path)
    return VideoSummary(
        frame_index, processed, with_faces, n_faces, time.perf_counter() - started, [csv_path, video_path, plot_path]
    )


def plot_timeline(timeline: dict[int, list[tuple[float, np.ndarray]]], classes: tuple[str, ...], path: Path) -> None:
    """Smoothed probability of each class over time, one panel per tracked face (at most 4)."""
    from matplotlib.figure import Figure

    ids = sorted(timeline, key=lambda i: -len(timeline[i]))[:4] or [0]
    fig = Figure(figsize=(9, 2.6 * len(ids)))
    axes = fig.subplots(len(ids), 1, squeeze=False)
    for ax, face_id in zip(axes[:, 0], ids):
        points = timeline.get(face_id, [])
        if points:
            times = [t for t, _ in points]
            values = np.stack([p for _, p in points])
            for c, name in enumerate(classes):
                ax.plot(times, values[:, c], label=name)
        ax.set_title(f"face #{face_id}" if points else "no face found")
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
    axes[-1, 0].set_xlabel("time (s)")
    if timeline:  # a video without faces has no lines to name
        axes[0, 0].legend(fontsize=7, ncol=4, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def run_webcam(predictor: Predictor, camera: int = 0, every: int = 1, smoothing: float = SMOOTHING) -> None:
    """A live OpenCV window with boxes, labels, probability bars and fps; q or Esc quits."""
    if every < 1:
        raise FerlabError("--every must be at least 1")
    if camera < 0:  # OpenCV crashes (segfault) on some negative indices instead of failing to open
        raise FerlabError(f"--camera {camera}: camera indices start at 0")
    capture = _open(camera)
    window = "ferlab (q to quit)"
    tracker = FaceTracker(predictor.classes, smoothing=smoothing)
    tracks: list[Track] = []
    frame_index, last, fps = 0, time.perf_counter(), 0.0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                raise FerlabError(f"camera {camera} stopped delivering frames")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if frame_index % every == 0:
                tracks = tracker.update(list(predictor.predict(rgb)))
            draw_tracks(rgb, tracker, tracks, predictor.uncertain_below)
            now = time.perf_counter()
            fps = 0.9 * fps + 0.1 / max(1e-6, now - last)
            last = now
            cv2.putText(rgb, f"{fps:.1f} fps", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 0), 2)
            try:
                cv2.imshow(window, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                key = cv2.waitKey(1) & 0xFF
            except cv2.error:
                raise FerlabError(
                    "this OpenCV build has no window support (opencv-python-headless); "
                    "install opencv-python for the webcam window, or use `ferlab app` for the browser"
                ) from None
            if key in (ord("q"), 27):
                break
            frame_index += 1
    finally:
        capture.release()
        with contextlib.suppress(cv2.error):  # headless OpenCV: there were no windows
            cv2.destroyAllWindows()
