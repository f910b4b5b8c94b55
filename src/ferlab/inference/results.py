"""Prediction records as tables: one row per face, or one row saying why an image has none.

`Faces.to_csv` / `Faces.to_json` write one image's records and `ferlab predict --out` a whole
run's, with the same columns, so a table from the library and one from the command read alike.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ferlab.errors import writes_to

Record = dict[str, Any]
"""`file`, `face` (1-based, None for an image without a face) and the face's fields, or `reason`."""


def csv_text(records: Iterable[Record], classes: Sequence[str]) -> str:
    """The records as CSV: box, detector score, label, confidence, uncertainty, one column per class
    (in the model's order) and `reason`, empty but for images without a face."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    head = ["file", "face", "x", "y", "w", "h", "detector_score", "label", "confidence", "uncertain"]
    writer.writerow([*head, *classes, "reason"])
    for r in records:
        file = "" if r.get("file") is None else r["file"]
        if r["face"] is None:
            writer.writerow([file, *[""] * (len(head) - 1 + len(classes)), r["reason"]])
            continue
        probabilities = r["probabilities"]
        writer.writerow(
            [
                file,
                r["face"],
                *r["box"],
                r["detector_score"],
                r["label"],
                f"{r['confidence']:.4f}",
                r["uncertain"],
                *(f"{probabilities[c]:.4f}" for c in classes),
                "",
            ]
        )
    return buffer.getvalue()


def json_text(records: Iterable[Record]) -> str:
    return json.dumps(list(records), indent=1)


def write_records(records: Sequence[Record], out: Path, classes: Sequence[str]) -> None:
    """CSV or JSON by the file's suffix (.json: JSON, else CSV), creating its folder; written
    whole or not at all (a full disk leaves no half table), and a failure is one line naming it."""
    text = json_text(records) if out.suffix.lower() == ".json" else csv_text(records, classes)
    with writes_to(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=out.parent, suffix=".tmp", delete=False, newline="") as handle:
            temporary = Path(handle.name)
        try:
            temporary.write_text(text, newline="")
            os.chmod(temporary, 0o644)  # an ordinary file, not a private temporary one
            os.replace(temporary, out)
        finally:
            temporary.unlink(missing_ok=True)
