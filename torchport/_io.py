"""Safe files for run directories: atomic writes that never follow a link, and one writer per directory.

Used by :mod:`torchport.checkpoint` and :mod:`torchport.train`.  The threats handled
(issue 13): a planted symbolic link making a run write outside its directory, a crash or
an interrupt mid-write leaving a truncated file, and two processes writing into the same
run directory.

* :func:`atomic_write_bytes` writes ``directory/name`` by creating a *fresh* temporary
  file in ``directory`` with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (a random name; a planted
  file or link of that name makes the open fail and another name is tried), writing,
  ``fsync``-ing it, then ``os.replace`` onto the target and ``fsync``-ing the directory.
  The directory is opened once with ``O_DIRECTORY | O_NOFOLLOW`` and every operation is
  relative to that descriptor, so swapping the directory for a link mid-way changes
  nothing.  A target that is a symbolic link is refused (``os.replace`` would replace the
  link rather than follow it; refusing says that something is wrong).
* :func:`read_bytes_nofollow` reads a file that must not be a symbolic link.
* :func:`check_run_dir` refuses a run directory that is itself a symbolic link.
* :class:`RunLock`: the lock file ``RUN_DIR/.lock`` holds ``"<pid> <host>"``.  On POSIX an
  exclusive ``fcntl.flock`` on it is the lock (released by the kernel when the holder
  dies, so the lock of a dead process is taken over automatically); elsewhere the file is
  created with ``O_EXCL`` and a lock whose pid no longer runs on this host is taken over.

No randomness beyond the temporary names (``secrets``; not part of any result).
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import stat
from pathlib import Path

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["UnsafePathError", "RunLockedError", "atomic_write_bytes", "read_bytes_nofollow", "check_run_dir",
           "RunLock", "LOCK_NAME"]

LOCK_NAME = ".lock"
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: os.replace takes src_dir_fd/dst_dir_fd wherever os.rename does (CPython lists only rename)
_DIR_FD = all(f in getattr(os, "supports_dir_fd", ()) for f in (os.open, os.rename, os.unlink, os.stat))


class UnsafePathError(ValueError):
    """A path that would make a write or read leave the run directory (a symbolic link)."""


class RunLockedError(FileExistsError):
    """Another live process holds the run directory's lock."""


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    """``run_dir`` as a Path; ``UnsafePathError`` if it is a symbolic link (wherever it points)."""
    run_dir = Path(run_dir)
    if _is_link(run_dir):
        raise UnsafePathError(f"run_dir={str(run_dir)!r} is a symbolic link (to {os.readlink(run_dir)!r}); "
                              "refusing to write through it -- give the real directory")
    return run_dir


def _open_dir(directory: Path) -> int:
    try:
        return os.open(directory, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(directory):
            raise UnsafePathError(f"directory {str(directory)!r} is a symbolic link; refusing to write into it") \
                from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically without following links (see the module doc).

    The parent directory must exist and must not be a symbolic link; ``path`` must not be
    one.  On any failure the target keeps its previous content and the temporary file is
    removed.  Returns ``path``.
    """
    path = Path(path)
    directory, name = path.parent, path.name
    if _is_link(path):
        raise UnsafePathError(f"{str(path)!r} is a symbolic link (to {os.readlink(path)!r}); refusing to replace it")
    if not _DIR_FD:  # pragma: no cover - platforms without dir_fd support
        return _atomic_write_plain(path, data)
    dfd = _open_dir(directory)
    try:
        fd, tmp = _create_temp(name, dfd)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False) if _exists_at(name, dfd) else None
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise UnsafePathError(f"{str(path)!r} became a symbolic link; refusing to replace it")
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except FileNotFoundError:
                pass
            raise
        try:
            os.fsync(dfd)  # make the rename durable
        except OSError:  # pragma: no cover - some file systems refuse fsync on directories
            pass
    finally:
        os.close(dfd)
    return path


def _exists_at(name: str, dfd: int) -> bool:
    try:
        os.stat(name, dir_fd=dfd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _create_temp(name: str, dfd: int | None, directory: Path | None = None) -> tuple[int, str]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
    for _ in range(100):
        tmp = f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            if dfd is not None:
                return os.open(tmp, flags, 0o644, dir_fd=dfd), tmp
            return os.open(directory / tmp, flags, 0o644), str(directory / tmp)  # pragma: no cover
        except FileExistsError:  # a planted file or link of that name: pick another
            continue
    raise OSError(f"could not create a fresh temporary file for {name!r}")  # pragma: no cover


def _atomic_write_plain(path: Path, data: bytes) -> Path:  # pragma: no cover - no dir_fd support
    fd, tmp = _create_temp(path.name, None, path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_bytes_nofollow(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``; ``UnsafePathError`` if it is a symbolic link, ``FileNotFoundError`` if absent."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP or _is_link(path):
            raise UnsafePathError(f"{str(path)!r} is a symbolic link; refusing to read through it") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:  # pragma: no cover
        return False
    return True


class RunLock:
    """One writer per run directory: ``RUN_DIR/.lock`` holding ``"<pid> <host>"`` (see the module doc).

    ``acquire()`` raises :class:`RunLockedError` naming the holder's pid and host when a live
    process holds it; a lock left by a dead process is taken over.  Use as a context manager
    or call ``release()``.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = check_run_dir(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _holder(self) -> str:
        try:
            text = read_bytes_nofollow(self.path).decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            text = ""
        return text or "unknown"

    def _refuse(self, holder: str):
        pid, _, host = holder.partition(" ")
        raise RunLockedError(
            f"run_dir={str(self.run_dir)!r} is in use by another qlangevin train (pid {pid}"
            f"{' on ' + host if host else ''}; lock file {str(self.path)!r}); wait for it to finish or "
            "use another --out")

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: lock already held by this object")
        if _is_link(self.path):
            raise UnsafePathError(f"{str(self.path)!r} is a symbolic link; refusing to use it as the run lock")
        me = f"{os.getpid()} {socket.gethostname()}\n".encode()
        if fcntl is None:  # pragma: no cover - Windows
            return self._acquire_pidfile(me)
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    self._refuse(self._holder())
                raise
            # The previous holder may have unlinked the file between our open and our flock:
            # then we hold a lock on a dead inode; start again.
            try:
                same = os.fstat(fd).st_ino == os.lstat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, me, 0)
            os.fsync(fd)
            self._fd = fd
            return self
        raise RunLockedError(f"{str(self.path)!r}: could not take the lock (it keeps changing)")  # pragma: no cover

    def _acquire_pidfile(self, me: bytes) -> "RunLock":  # pragma: no cover - Windows
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, 0o644)
            except FileExistsError:
                holder = self._holder()
                pid_s, _, host = holder.partition(" ")
                try:
                    pid = int(pid_s)
                except ValueError:
                    pid = -1
                if host == socket.gethostname() and not _pid_alive(pid):
                    os.unlink(self.path)  # stale: its process is gone
                    continue
                self._refuse(holder)
            os.write(fd, me)
            self._fd = fd
            return self
        self._refuse(self._holder())

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if fcntl is None:  # pragma: no cover
                os.close(fd)
                os.unlink(self.path)
                return
            # Remove the file while still holding the lock, so nobody is left holding a lock on
            # an unlinked file while a third process creates a new one.
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
