"""torchport.checkpoint and torchport._io: checksummed weights-only checkpoints, link-safe atomic
writes, one writer per run directory."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from torchport import _io
from torchport.checkpoint import (
    MAGIC,
    CheckpointError,
    encode,
    load_checkpoint,
    save_checkpoint,
)


class _Evil:
    """Unpickling this would run ``open(marker, "w")`` (a stand-in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _payload():
    g = torch.Generator().manual_seed(3)
    return {"step": 7, "model": {"w": torch.arange(6.0).reshape(2, 3)}, "gen": g.get_state(),
            "history": [{"loss": 0.5}], "config": {"lr": 0.1, "name": None}}


def test_roundtrip_is_exact_and_plain(tmp_path):
    p = save_checkpoint(_payload(), tmp_path / "c.pt")
    back = load_checkpoint(p)
    assert back["step"] == 7 and torch.equal(back["model"]["w"], _payload()["model"]["w"])
    assert torch.equal(back["gen"], _payload()["gen"]) and back["gen"].dtype == torch.uint8
    assert back["history"] == [{"loss": 0.5}] and back["config"] == {"lr": 0.1, "name": None}
    assert p.read_bytes().startswith(MAGIC)
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


def test_planted_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    bare = tmp_path / "bare.pt"
    torch.save({"model": _Evil(marker)}, bare)  # an old-style (unframed) checkpoint
    with pytest.raises(CheckpointError, match="not a qlangevin checkpoint"):
        load_checkpoint(bare)
    framed = tmp_path / "framed.pt"  # a correct checksum does not make a pickle safe
    framed.write_bytes(encode({"model": _Evil(marker)}))
    with pytest.raises(CheckpointError, match="plain data"):
        load_checkpoint(framed)
    assert not marker.exists()
    # mutation: the same file loaded with weights_only=False does execute the payload
    import io  # noqa: PLC0415

    torch.load(io.BytesIO(framed.read_bytes()[len(MAGIC) + 65:]), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("where", ["magic", "digest", "payload_start", "middle", "end"])
def test_64_zeroed_bytes_are_refused(tmp_path, where):
    p = save_checkpoint(_payload(), tmp_path / "c.pt")
    data = bytearray(p.read_bytes())
    offset = {"magic": 0, "digest": len(MAGIC), "payload_start": len(MAGIC) + 65,
              "middle": len(data) // 2, "end": len(data) - 64}[where]
    data[offset:offset + 64] = bytes(64)
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not a qlangevin checkpoint|checksum|corrupted"):
        load_checkpoint(p)


def test_truncated_and_missing_files(tmp_path):
    p = save_checkpoint(_payload(), tmp_path / "c.pt")
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(p)
    p.write_bytes(MAGIC + b"abc")
    with pytest.raises(CheckpointError, match="header"):
        load_checkpoint(p)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "none.pt")


def test_links_are_never_followed(tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("keep")
    run = tmp_path / "run"
    run.mkdir()
    # 1. the target is a link: refused, the victim untouched
    (run / "c.pt").symlink_to(victim)
    with pytest.raises(_io.UnsafePathError, match="symbolic link"):
        save_checkpoint(_payload(), run / "c.pt")
    with pytest.raises(_io.UnsafePathError, match="symbolic link"):
        load_checkpoint(run / "c.pt")
    # 2. a link planted at the temporary name: O_EXCL|O_NOFOLLOW fails, another name is used
    names = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(_io.secrets, "token_hex", lambda n: next(names))
    (run / ".d.pt.aaaa.tmp").symlink_to(victim)
    save_checkpoint(_payload(), run / "d.pt")
    assert load_checkpoint(run / "d.pt")["step"] == 7
    assert victim.read_text() == "keep" and (run / ".d.pt.aaaa.tmp").is_symlink()
    # 3. the directory itself is a link
    (tmp_path / "linkdir").symlink_to(outside)
    with pytest.raises(_io.UnsafePathError, match="symbolic link"):
        save_checkpoint(_payload(), tmp_path / "linkdir" / "c.pt")
    with pytest.raises(_io.UnsafePathError, match="symbolic link"):
        _io.check_run_dir(tmp_path / "linkdir")
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]


_HOLD = """
import sys, time
from torchport._io import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(60)
"""


def _hold_lock(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_run_lock_one_writer_and_stale_takeover(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = _hold_lock(run)
    try:
        with pytest.raises(_io.RunLockedError, match=f"pid {holder.pid}"):
            _io.RunLock(run).acquire()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock file remains, naming a dead pid; taken over
    assert (run / ".lock").read_text().split()[0] == str(holder.pid)
    with _io.RunLock(run) as lock:
        assert lock.held and (run / ".lock").read_text().split()[0] == str(os.getpid())
        with pytest.raises(_io.RunLockedError):  # a second writer in the same process is refused too
            _io.RunLock(run).acquire()
    assert not (run / ".lock").exists()
    # a planted link as the lock file is refused
    (run / ".lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(_io.UnsafePathError):
        _io.RunLock(run).acquire()
    assert not (tmp_path / "elsewhere").exists()


def test_stale_lock_of_a_dead_pid_written_by_hand(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    time.sleep(0.05)
    (tmp_path / ".lock").write_text(f"{proc.pid} {os.uname().nodename}\n")
    with _io.RunLock(tmp_path):
        pass


def test_every_torch_load_in_the_packages_is_weights_only():
    """No package module unpickles arbitrary objects: every ``torch.load(`` call passes
    ``weights_only=True`` and ``weights_only=False`` appears nowhere (tests excluded)."""
    import ast  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    root = Path(__file__).resolve().parents[2]
    calls = 0
    for package in ("refimpl", "torchport", "theory", "qlangevin"):
        for path in (root / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "load" and getattr(node.func.value, "id", None) == "torch"):
                    continue
                calls += 1
                kw = {k.arg: k.value for k in node.keywords}
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, \
                    f"{path.relative_to(root)}:{node.lineno}: torch.load without weights_only=True"
            assert "weights_only=False" not in path.read_text(), path
    assert calls >= 1  # torchport/checkpoint.py
