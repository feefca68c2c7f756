"""Shared artifact I/O: one atomic writer, JSON and CSV writers, a safetensors-metadata reader.

Every artifact goes through :func:`atomic_write`: the content is written to a temporary file
from ``mkstemp`` beside the target (``.interp-<name>.<random>.tmp``, a name only interp
writes), flushed to disk (``fsync``), made ``0644`` and renamed onto the target with
``os.replace``. A killed write therefore leaves either the old file or the new one, never half
of one (an orphaned temporary at worst, which :func:`clean_temporaries` removes on the next run;
it removes nothing else: a user's own ``.*.tmp`` files stay). Disk-full and permission problems
become :class:`~interp.errors.DiskFullError` / :class:`NotWritableError` naming the path.

**Boundaries.** A folder registered with :func:`add_boundary` (a run directory, once its writer
holds the lock) is a boundary: :func:`atomic_write` and :func:`make_dirs` refuse a path under it
whose real location (symbolic links resolved) is outside it, with :class:`OutsideRunError`. So a
directory link planted inside a run (``RUN/figures -> /elsewhere``) is never written through;
a link to a single file is replaced by the new file, never written through either.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from interp.errors import DiskFullError, InputError, InterpError

#: the start of every temporary name :func:`atomic_write` uses (``.interp-<name>.<random>.tmp``)
TEMPORARY_PREFIX = ".interp-"
TEMPORARY_SUFFIX = ".tmp"

_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


class NotWritableError(InterpError, PermissionError):
    """A path the process may not write (permissions, a read-only file system)."""

    def __init__(self, path: str | Path, problem: str | None = None, fix: str | None = None) -> None:
        self.path = Path(path)
        super().__init__(problem or f"{path} is not writable (permission denied or read-only file system)",
                         fix or "Write the run to a directory you can write (e.g. another --run / --out), or fix its permissions")
        self.errno, self.filename = errno.EACCES, str(path)

    def __reduce__(self):
        return type(self), (self.path, self.problem, self.fix)


def write_error(error: BaseException, path: str | Path) -> BaseException | None:
    """The named error for a failed write of ``path`` (disk full / not writable), else ``None``.

    Recognises ``OSError`` numbers, safetensors' ``SafetensorError`` and torch's
    ``enforce fail at inline_container`` (what ``torch.save`` raises when the disk fills up).
    """
    if isinstance(error, (DiskFullError, NotWritableError)):
        return None
    if isinstance(error, OSError) and error.errno in _FULL:
        return DiskFullError(path)
    if isinstance(error, OSError) and error.errno in _NOT_WRITABLE:
        return NotWritableError(path)
    text = str(error).lower()
    if type(error).__name__ == "SafetensorError":  # "I/O error: No space left on device (os error 28)"
        if "permission denied" in text or "read-only" in text:
            return NotWritableError(path)
        if any(s in text for s in ("no space", "file too large", "quota")):
            return DiskFullError(path)
    if isinstance(error, RuntimeError) and ("inline_container" in text or "pytorchstreamwriter" in text):
        return DiskFullError(path)  # what torch.save raises when the disk fills up mid-write
    return None


class OutsideRunError(InputError):
    """A write under a run directory whose real location is outside it (a planted symbolic link)."""


#: registered boundaries: the folder as named (absolute, normalised) -> its real location
_BOUNDARIES: dict[str, str] = {}


def add_boundary(folder: str | Path) -> None:
    """Make ``folder`` a boundary: no write under it may land outside it (see the module docstring)."""
    _BOUNDARIES[os.path.abspath(folder)] = os.path.realpath(folder)


def check_inside(path: str | Path) -> None:
    """Raise :class:`OutsideRunError` if ``path`` is under a boundary but its folder really is not.

    The folder's real location is what a write would reach (``os.path.realpath`` resolves every
    link of the existing part); the target itself may be a link (it is replaced, not followed).
    """
    named = os.path.abspath(path)
    for root, real_root in _BOUNDARIES.items():
        if named == root or not named.startswith(root.rstrip(os.sep) + os.sep):
            continue
        try:
            real = os.path.realpath(os.path.dirname(named))
        except OSError as error:  # a link loop on an older Python
            raise OutsideRunError(f"{path} cannot be resolved ({error.strerror or error})",
                                  fix=f"Remove the symbolic links under {root}") from None
        if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
            raise OutsideRunError(
                f"{path} would be written at {os.path.join(real, os.path.basename(named))}, outside the run directory "
                f"{root}: a symbolic link inside the run leads out of it",
                fix=f"Interp never writes through links that leave a run: remove the link (e.g. `rm {_link_in(named, root)}`) "
                    "or write to a new run directory")


def _link_in(named: str, root: str) -> str:
    """The first symbolic link on the way from ``root`` down to ``named`` (for the message)."""
    current = root
    for part in os.path.relpath(named, root).split(os.sep):
        current = os.path.join(current, part)
        if os.path.islink(current):
            return current
    return os.path.dirname(named)


def remove(path: str | Path) -> None:
    """Delete a file interp wrote (missing is fine), never through a link that leaves a boundary."""
    check_inside(path)
    Path(path).unlink(missing_ok=True)


def make_dirs(folder: str | Path) -> Path:
    """``mkdir -p`` that refuses a folder under a boundary whose real location is outside it."""
    folder = Path(folder)
    check_inside(folder / "_")
    with _named_write_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends, commit it onto ``path``.

    Write the content to the yielded path (any writer that takes a path). On success the file
    is fsynced, made 0644 and renamed onto ``path``; on error the temporary is removed and the
    previous ``path`` (if any) stays as it was.
    """
    path = Path(path)
    check_inside(path)
    with _named_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
        os.close(fd)
    try:
        with _named_write_errors(path):
            yield Path(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def _named_write_errors(path: Path) -> Iterator[None]:
    """Re-raise a failed write of ``path`` as its named error (:func:`write_error`), if it has one."""
    try:
        yield
    except Exception as error:
        named = write_error(error, path)
        if named is None:
            raise
        raise named from error


def clean_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries a killed :func:`atomic_write` left under ``folder``; returns them.

    Only files named as :func:`atomic_write` names them (``.interp-*.tmp``) are removed, and
    links are neither followed nor removed: nothing interp did not write is deleted.
    """
    folder = Path(folder)
    removed = []
    if folder.is_dir() and not folder.is_symlink():
        for parent, _, files in os.walk(folder, followlinks=False):
            for name in files:
                tmp = Path(parent) / name
                if name.startswith(TEMPORARY_PREFIX) and name.endswith(TEMPORARY_SUFFIX) and not tmp.is_symlink() and tmp.is_file():
                    tmp.unlink(missing_ok=True)
                    removed.append(tmp)
    return sorted(removed)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically (non-JSON values written with ``str``)."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_csv(table: Any, path: str | Path, markdown: bool = False) -> Path:
    """Write a table (a DataFrame or a list of dict rows) as CSV, atomically.

    ``markdown=True`` also writes the ``.md`` twin beside it (for reading, floats to 4 places).
    Returns the CSV path.
    """
    import pandas as pd

    path = Path(path)
    if not isinstance(table, pd.DataFrame):  # rows: written as given (columns in first-seen order)
        rows: Sequence[Mapping[str, Any]] = list(table)
        with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows(rows)
        if not markdown:
            return path
        table = pd.DataFrame(rows)
    else:
        with atomic_write(path) as tmp:
            table.to_csv(tmp, index=False)
    if markdown:
        write_text(path.with_suffix(".md"), table.to_markdown(index=False, floatfmt=".4f") + "\n")
    return path


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata in a safetensors header (``{}`` when there is none); reads no tensors."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist", fix="check the path (or run the stage that writes it)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except SafetensorError as error:
        raise InputError(f"{path} is not a readable safetensors file ({error})",
                         fix="restore it or write it again") from None


def read_tensors(path: str | Path, fix: str = "delete it to compute it again (or rerun with --force)") -> dict[str, Any]:
    """Every tensor of a safetensors file; a missing, truncated or foreign file is an :class:`InputError`
    naming it (``fix``: what to do, e.g. how the file is made again)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"{path} is not a readable safetensors file ({error})", fix=f"{fix[:1].upper()}{fix[1:]}") from None
