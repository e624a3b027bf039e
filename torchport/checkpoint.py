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
:func:`save_checkpoint` refuses, before writing anything, an object that
``load_checkpoint`` would refuse: a ``TypeError`` naming where in the object the first
other value sits (``obj['optimizer']['state'][0]`` ...) and its type.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from collections import OrderedDict
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


#: leaf types a checkpoint may hold (what ``torch.load(weights_only=True)`` rebuilds), besides tensors
_PLAIN_LEAVES = (type(None), bool, int, float, complex, str, bytes, bytearray, torch.dtype, torch.device,
                 torch.Size)


def check_plain_data(obj: Any, where: str = "obj") -> None:
    """``TypeError`` naming the first value of ``obj`` that is not a tensor or plain data (see the module doc).

    Containers: ``dict``/``OrderedDict`` (keys plain), ``list``, ``tuple``, ``set``; leaves:
    tensors, None, bool, int, float, complex, str, bytes, ``torch.dtype``/``device``/``Size``.  Exact
    types (a numpy scalar or array, a namedtuple, a module or a function is refused).
    """
    stack = [(obj, where)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, torch.Tensor) or type(value) in _PLAIN_LEAVES:
            continue
        if type(value) in (dict, OrderedDict):
            for k, v in value.items():
                if type(k) not in _PLAIN_LEAVES:
                    raise TypeError(f"{path} has a key of type {type(k).__name__} ({k!r:.40}): a checkpoint holds "
                                    "only tensors and plain data")
                stack.append((v, f"{path}[{k!r}]"))
        elif type(value) in (list, tuple, set):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value))
        else:
            raise TypeError(f"{path} is a {type(value).__name__} ({value!r:.60}): a checkpoint holds only tensors "
                            "and plain data (dict, list, tuple, str, numbers, bool, None), which "
                            "torch.load(weights_only=True) can rebuild")


def _check_map_location(map_location) -> None:
    if map_location is None or callable(map_location) or isinstance(map_location, (torch.device, dict)):
        return
    if not isinstance(map_location, str):
        raise TypeError(f"map_location={map_location!r}: must be None, a device (str or torch.device), a dict or "
                        "a callable")
    try:
        torch.device(map_location)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"map_location={map_location!r}: not a device ({str(exc).splitlines()[0]})") from None


def _check_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path={path!r:.80}: must be a path (str or os.PathLike)")
    return Path(path)


def encode(obj: Any) -> bytes:
    """The framed bytes of ``obj`` (magic, SHA-256 of the payload, payload).

    The raw framer: ``obj`` is not checked here (the tests frame a forbidden object with it to
    check that :func:`decode` refuses it); :func:`save_checkpoint` checks first.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    return MAGIC + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n" + payload


def save_checkpoint(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` (tensors and plain data) to ``path`` atomically, checksummed; returns ``path``."""
    path = _check_path(path)
    check_plain_data(obj)
    return atomic_write_bytes(path, encode(obj))


def decode(data: bytes, source: str = "checkpoint", *, map_location: MAP_LOCATION = None) -> Any:
    """Check and unpickle framed bytes (see the module doc); ``source`` names the file in errors."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes (a framed checkpoint), got {type(data).__name__}")
    if not isinstance(source, str):
        raise TypeError(f"source={source!r:.60}: must be a str (it names the file in messages)")
    _check_map_location(map_location)
    data = bytes(data)
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
    path = _check_path(path)
    _check_map_location(map_location)
    try:
        data = read_bytes_nofollow(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(path)!r}: no such checkpoint") from None
    return decode(data, repr(str(path)), map_location=map_location)
