"""Paths as the hub's JSON carries them (``ferry_proto::wire_path``).

POSIX names are bytes and JSON strings are Unicode: on the wire every
byte that is not part of valid UTF-8, and every ``%``, is written ``%XX``.
This module converts between that text and Python paths. A ``str`` path
is taken as the OS would (``os.fsencode``, so names read with
``surrogateescape`` round-trip); ``bytes`` are sent exactly.
"""

from __future__ import annotations

import os
from typing import Union

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

_HEX = frozenset(b"0123456789abcdefABCDEF")

__all__ = ["PathLike", "encode_path", "decode_path", "decode_path_bytes"]


def encode_path(path: PathLike) -> str:
    """The wire text of ``path``."""
    raw = os.fsencode(path)
    text = raw.decode("utf-8", errors="surrogateescape")
    out = []
    for char in text:
        if "\udc80" <= char <= "\udcff":
            out.append("%%%02X" % (ord(char) - 0xDC00))
        elif char == "%":
            out.append("%25")
        else:
            out.append(char)
    return "".join(out)


def decode_path_bytes(text: str) -> bytes:
    """The bytes that wire text names; ``ValueError`` on a bad escape."""
    raw = text.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25:  # '%'
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not all(b in _HEX for b in pair):
                raise ValueError(f"bad %-escape in path {text!r}: use %25 for a literal %")
            out.append(int(pair.decode("ascii"), 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def decode_path(text: str) -> str:
    """Wire text as a ``str`` path (odd bytes as lone surrogates, as
    ``os.fsdecode`` gives them), which :func:`encode_path` turns back."""
    return decode_path_bytes(text).decode("utf-8", errors="surrogateescape")
