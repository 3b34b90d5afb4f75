"""Writing files so that nothing is ever half-written: temp file beside the target, fsync, rename,
fsync the folder. Light on imports, so settings and other start-up code can use it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write bytes to a temp file beside `path`, fsync it, rename it over `path`, fsync the folder."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid is in the temp name so a later clean-up can tell abandoned temp files
    # (their writer is gone) from ones another live process is still writing.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)
    return target


def fsync_dir(folder: Path) -> None:
    if os.name == "nt":
        return
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def check_writable(path: str | os.PathLike[str], what: str = "the output") -> None:
    """Refuse, before any work starts, a file path that cannot be written: a folder where the file
    should be, a folder that cannot be made, no permission, a read-only disk. Leaves nothing behind
    (a probe file and any folder made for it are removed again). Raises `InvalidRequest`."""
    from studio.core.errors import InvalidRequest

    target = Path(os.path.abspath(Path(path).expanduser()))
    if target.is_dir():
        raise InvalidRequest(f"{what} {path} is a folder; give a file name")
    missing = []
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    if not folder.is_dir():
        raise InvalidRequest(f"cannot write {what} {path}: {folder} is a file, not a folder")
    made: list[Path] = []
    try:
        for d in reversed(missing):
            try:
                d.mkdir()
            except OSError as exc:
                raise InvalidRequest(
                    f"cannot write {what} {path}: the folder {d} cannot be made ({exc.strerror or exc})"
                ) from None
            made.append(d)
        try:
            fd, probe = tempfile.mkstemp(prefix=".studio-write-check.", suffix=TEMP_SUFFIX, dir=target.parent)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise InvalidRequest(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    finally:
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()
