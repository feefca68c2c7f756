"""Named errors for everything a user can get wrong: each says the problem and the fix.

Raise :class:`InterpError` (or a subclass) for user-facing problems. ``str(e)`` is
``"problem. fix"``; the CLI prints it as one line and exits with :attr:`InterpError.exit_status`
(2 for usage and input errors, 1 for failures); ``--debug`` or ``INTERP_DEBUG=1`` adds the
traceback. The input errors are also ``ValueError`` so existing ``except ValueError`` code keeps
working.

    raise ConfigError("--steps must be positive, got -3", fix="pass --steps 1 or more")
"""

from __future__ import annotations

import errno
from pathlib import Path


class InterpError(Exception):
    """Base of every named error: a problem and (optionally) how to fix it."""

    exit_status = 1  # a failure; usage and input errors use 2

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__(problem, fix)  # both in args, so the error pickles across processes
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        problem = self.problem.rstrip()
        if not self.fix:
            return problem
        return f"{problem if problem.endswith(('.', '?', '!')) else problem + '.'} {self.fix}"


class ConfigError(InterpError, ValueError):
    """An option or config value out of range, of the wrong kind, or not among the choices."""

    exit_status = 2


class InputError(InterpError, ValueError):
    """A file, tensor or argument that cannot be used as given (the message names it)."""

    exit_status = 2


class CheckpointError(InputError):
    """A checkpoint (weights or a resumable training state) that cannot be used as it is."""


class HookError(InputError):
    """A hook name that matches nothing, or a hook that returned a tensor that does not fit."""


class UnsafeFileError(InputError, PermissionError):
    """A file that only pickle could read (which can run code from it); refused unless opted in."""


class ResumeConflict(InterpError):
    """A run directory holds results made with another config; resuming would mix the two."""

    exit_status = 2


class DiskFullError(InterpError, OSError):
    """No space left (or a file-size limit reached) while writing ``path``."""

    def __init__(self, path: str | Path, problem: str | None = None, fix: str | None = None) -> None:
        self.path = Path(path)
        super().__init__(
            problem or f"no space left on the device while writing {path}",
            fix or "Free some disk space (or write the run elsewhere) and rerun: finished steps resume",
        )
        self.errno, self.filename = errno.ENOSPC, str(path)

    def __reduce__(self):  # rebuild with the path first
        return type(self), (self.path, self.problem, self.fix)


class OutOfMemoryError(InterpError):
    """An allocation failed (host memory or an accelerator's): the sizes asked for do not fit."""

    def __init__(self, detail: str, problem: str | None = None, fix: str | None = None) -> None:
        self.detail = detail
        super().__init__(problem or f"out of memory ({detail})",
                         fix or "Lower the sizes (--n-eval, --n-candidates, --sweep-prompts, --samples, --chunk, ...) "
                                "or free memory; finished steps resume")

    def __reduce__(self):
        return type(self), (self.detail, self.problem, self.fix)

    @staticmethod
    def of(error: BaseException) -> "OutOfMemoryError | None":
        """The named error for a failed allocation (``MemoryError``, torch's out-of-memory), else None."""
        text = str(error)
        if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError" and not isinstance(error, InterpError) \
                or (isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())):
            return OutOfMemoryError(" ".join(text.split())[:200] or type(error).__name__)
        return None


__all__ = ["InterpError", "ConfigError", "InputError", "CheckpointError", "HookError", "UnsafeFileError", "ResumeConflict", "DiskFullError", "OutOfMemoryError"]
