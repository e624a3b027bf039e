"""Checkpoint files: a checksummed frame around a ``torch.save`` payload, loaded with ``weights_only=True``.

File layout (every byte covered by a check)::

    b"QLANGEVIN-CHECKPOINT v1\\n"          24 bytes, the magic line
    <sha256 of the payload, 64 hex digits>  + b"\\n"
    <payload>                               torch.save(obj) bytes (a zip archive)

:func:`save_checkpoint` writes it with :func:`torchport._io.atomic_write_bytes` (a fresh
temporary file, ``fsync``, ``os.replace``; links never followed).  :func:`load_checkpoint`

1. refuses a file that does not start with the magic line (for example a bare
   ``torch.save`` file from an older qlangevin, or any planted pickle);
2. refuses a payload whose SHA-256 differs from the recorded one (a truncated, corrupted
   or edited file -- one zeroed byte anywhere changes the magic, the digest or the payload);
3. unpickles with ``torch.load(..., weights_only=True)``, which builds only tensors and
   plain containers and numbers, never calls an arbitrary callable: a payload holding any
   other object is refused even when its checksum is right (a checksum is not a
   signature).

What a checkpoint may therefore hold: tensors (generator states are uint8 tensors,
``torch.Generator.get_state()``), dicts, lists, tuples, strings, numbers, booleans and
``None`` -- the optimizer ``state_dict``s of torchport are such data.  Every refusal is a
:class:`CheckpointError` (a ``ValueError``) naming the file and the reason.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch.serialization import MAP_LOCATION

from torchport._io import atomic_write_bytes, read_bytes_nofollow

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "MAGIC"]

MAGIC = b"QLANGEVIN-CHECKPOINT v1\n"
_DIGEST_LEN = 64


class CheckpointError(ValueError):
    """A checkpoint file that is not one, is corrupted, or holds objects other than plain data."""


def encode(obj: Any) -> bytes:
    """The framed bytes of ``obj`` (magic, SHA-256 of the payload, payload)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    return MAGIC + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n" + payload


def save_checkpoint(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` (tensors and plain data) to ``path`` atomically, checksummed; returns ``path``."""
    return atomic_write_bytes(path, encode(obj))


def decode(data: bytes, source: str = "checkpoint", *, map_location: MAP_LOCATION = None) -> Any:
    """Check and unpickle framed bytes (see the module doc); ``source`` names the file in errors."""
    if not data.startswith(MAGIC):
        if data[:2] == b"PK" or data[:1] == b"\x80":
            raise CheckpointError(
                f"{source}: not a qlangevin checkpoint (a bare torch/pickle file without checksum; "
                "files from before the checksummed format are refused -- start the run again)")
        raise CheckpointError(f"{source}: not a qlangevin checkpoint (the file does not start with {MAGIC!r})")
    head = len(MAGIC) + _DIGEST_LEN + 1
    if len(data) < head or data[head - 1:head] != b"\n":
        raise CheckpointError(f"{source}: truncated or corrupted checkpoint header")
    expected = data[len(MAGIC):head - 1].decode("ascii", "replace")
    payload = data[head:]
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected:
        raise CheckpointError(f"{source}: checksum mismatch (SHA-256 recorded {expected[:16]}..., "
                              f"payload has {actual[:16]}...): the file is corrupted or was modified; refused")
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{source}: holds objects other than tensors and plain data; refused "
                              f"(weights_only=True: {first})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{source}: unreadable payload ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None


def load_checkpoint(path: str | os.PathLike, *, map_location: MAP_LOCATION = None) -> Any:
    """Read, verify and unpickle ``path`` (``weights_only=True``); :class:`CheckpointError` on any refusal.

    ``FileNotFoundError`` if ``path`` does not exist; a symbolic link is refused.
    """
    path = Path(path)
    try:
        data = read_bytes_nofollow(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(path)!r}: no such checkpoint") from None
    return decode(data, repr(str(path)), map_location=map_location)
