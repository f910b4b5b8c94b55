"""File names as the OS gave them: bytes that need not be valid UTF-8.

On Linux a file name is bytes; Python hands the bytes that are not UTF-8 over as lone
surrogates ("surrogateescape"), which `str.encode()`, a UTF-8 text file and a terminal all
refuse. Archives unpacked from Windows are full of such names (Latin-1 `café.png`). Anything
that hashes, prints or writes a name goes through here, so one bad name never costs a run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_ESCAPED_BEFORE = re.compile("(\\\\+)(?=x[0-9a-fA-F]{2}|[\udc80-\udcff])")
_UNDECODED = re.compile("[\udc80-\udcff]")


def name_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes the OS has for this name (what hashing and comparing should use)."""
    return os.fsencode(path)


def shown(path: str | os.PathLike[str]) -> str:
    """A name as valid UTF-8 text: bytes that are not UTF-8 become `\\xNN`, and a backslash run
    that precedes `xNN` or such a byte is doubled, so `unshown` gives back the exact bytes.
    Every other name (Windows paths included) is unchanged."""
    text = os.fsdecode(path)
    if "\\x" not in text and not _UNDECODED.search(text):
        return text
    text = _ESCAPED_BEFORE.sub(lambda m: m.group(1) * 2, text)
    return _UNDECODED.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text)


def unshown(text: str) -> bytes:
    """The original bytes of a name `shown` wrote (as written in a CSV or JSON file)."""
    out = bytearray()
    position = 0
    for match in re.finditer(r"(\\+)x([0-9a-fA-F]{2})", text):
        out += text[position : match.start()].encode()
        slashes = len(match.group(1))
        out += b"\\" * (slashes // 2)
        out += bytes([int(match.group(2), 16)]) if slashes % 2 else f"x{match.group(2)}".encode()
        position = match.end()
    out += text[position:].encode()
    return bytes(out)


def path_of_shown(text: str) -> Path:
    """The path `shown` wrote, for opening the file again."""
    return Path(os.fsdecode(unshown(text)))
