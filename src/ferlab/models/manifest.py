"""The ONNX manifest is now the model record (ferlab.models.record): these names stay importable.

A manifest of an older version (`ferlab-onnx/1`) is a record with only the running facts, and
`ModelRecord.load` reads it.
"""

from __future__ import annotations

from ferlab.models.record import RECORD_FORMAT as MANIFEST_FORMAT
from ferlab.models.record import ModelRecord as ModelManifest
from ferlab.models.record import OnnxPrecision, file_sha256, onnx_file_name
from ferlab.models.record import find_record as find_manifest

__all__ = ["MANIFEST_FORMAT", "ModelManifest", "OnnxPrecision", "file_sha256", "find_manifest", "onnx_file_name"]
