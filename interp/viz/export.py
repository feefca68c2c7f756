"""Writing figures: one set of files (HTML, PNG, PDF, SVG) written together or not at all.

* **All or nothing.** :func:`save_figure` renders every format first (to temporaries beside
  the targets) and renames them into place only when all succeeded, so a failed export never
  leaves a mixed set (an HTML of one mask beside an SVG of another).
* **Offline HTML.** plotly.js is embedded in each HTML file (``plotlyjs="embed"``, ~4.5 MB) or
  written once beside them as ``plotly.min.js`` (``plotlyjs="beside"``, what ``interp figures``
  uses for a folder of figures): either way the page renders without a network.
* **Static formats** go through kaleido (>= 1.0), which drives a headless Chrome or Chromium
  (Debian's ``chromium``). :func:`export_session` keeps one browser open for a block of
  exports; a failed render (kaleido's browser is occasionally not ready:
  ``ReferenceError: kaleido_scopes is not defined``) is retried on a fresh browser before it
  is reported, as one readable line (:class:`ExportError`), never as a JavaScript trace.
* **Names that say what is in the file**: :func:`figure_stem` joins readable parts and, for a
  unit mask, its size and a short hash, so two exports of different masks never overwrite
  each other.

Where no Chrome is installed the static formats are skipped with one warning saying how to get them.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import plotly.graph_objects as go

from interp.errors import ConfigError, InterpError
from interp.io import atomic_write

STATIC_FORMATS = ("png", "pdf", "svg")
FORMATS = ("html", *STATIC_FORMATS)
PLOTLYJS_MODES = ("embed", "beside")
PLOTLYJS_FILE = "plotly.min.js"
#: renders of one static format tried before giving up (each retry on a fresh browser)
ATTEMPTS = 2
#: how to get static figures where they were skipped
STATIC_HELP = (
    "PNG/PDF/SVG need kaleido and a Chrome or Chromium: `pip install kaleido` and "
    "`apt-get install chromium` (Debian/Ubuntu; or set BROWSER_PATH to a Chrome binary), "
    "then run `interp figures RUN_DIR` again"
)
CHROME_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class ExportError(InterpError, RuntimeError):
    """A figure could not be written; ``str(error)`` is one line: the file, the cause and the fix."""


def chrome_available() -> bool:
    """Whether kaleido and a Chrome/Chromium binary are both present."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    browser = os.environ.get("BROWSER_PATH")  # where kaleido's choreographer looks first
    if browser and Path(browser).is_file():
        return True
    return any(shutil.which(name) for name in CHROME_NAMES)


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """Validate figure formats (``html``, ``png``, ``pdf``, ``svg``); returns them as a tuple."""
    if isinstance(formats, str):
        formats = tuple(f.strip() for f in formats.split(",") if f.strip())
    formats = tuple(f.lower() if isinstance(f, str) else f for f in formats)  # HTML is html
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"unknown figure format(s) {unknown or list(formats)}",
                          fix=f"Choose from {', '.join(FORMATS)} (comma-separated)")
    return tuple(dict.fromkeys(formats))


def figure_stem(*parts: Any, mask: Any = None) -> str:
    """A file stem from readable parts, plus ``<k>of<n>-<hash>`` for a 0/1 unit ``mask``.

    ``figure_stem("explorer", "segmentation", "prompt3", mask=m)`` ->
    ``explorer_segmentation_prompt3_12of168-1f3a9c``; the hash (of the mask's bits) tells two
    masks with the same count apart, and the same mask always gets the same name.
    """
    words = [_slug(str(p)) for p in parts if p is not None and str(p) != ""]
    if mask is not None:
        import numpy as np

        bits = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask).astype(bool).ravel()
        digest = hashlib.sha1(np.packbits(bits).tobytes() + str(bits.size).encode()).hexdigest()[:6]
        words.append(f"{int(bits.sum())}of{bits.size}-{digest}")
    if not words:
        raise ValueError("figure_stem needs at least one part")
    return "_".join(words)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-") or "x"


# --------------------------------------------------------------------------------------------
# kaleido's browser


def _kaleido_server(action: str) -> bool:
    """Start / stop / query kaleido's shared browser (kaleido >= 1.1); False where there is none."""
    import kaleido

    server = getattr(kaleido, "_global_server", None)
    running = bool(server is not None and getattr(server, "is_running", lambda: False)())
    if action == "running" or not hasattr(kaleido, "start_sync_server"):
        return running
    if action == "start" and not running:
        kaleido.start_sync_server(silence_warnings=True)
    elif action == "stop" and running:
        kaleido.stop_sync_server(silence_warnings=True)
    return True


@contextmanager
def export_session() -> Iterator[bool]:
    """Keep one headless Chrome open for the static exports inside the block.

    Yields whether static export is possible at all. Without kaleido's sync server (kaleido
    < 1.1) or without Chrome this is a no-op; a server someone else started is left running.
    """
    if not chrome_available():
        yield False
        return
    started = not _kaleido_server("running") and _kaleido_server("start")
    try:
        with warnings.catch_warnings():  # plotly passes per-call options a shared server ignores
            warnings.filterwarnings("ignore", message="The kopts argument is ignored")
            yield True
    finally:
        if started:
            _kaleido_server("stop")


def keep_browser_open() -> bool:
    """Start kaleido's shared browser for the rest of the process (closed at exit), so that
    repeated exports (the explorer's button) take ~1 s instead of ~10 s; False without Chrome."""
    if not chrome_available():
        return False
    if not _kaleido_server("running") and _kaleido_server("start"):
        atexit.register(_kaleido_server, "stop")
    return True


def _render_static(fig: go.Figure, fmt: str, scale: float, attempts: int = ATTEMPTS) -> bytes:
    """``fig`` as PNG/PDF/SVG bytes; a failure is retried on a fresh kaleido browser."""
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The kopts argument is ignored")
                return fig.to_image(format=fmt, scale=scale)
        except Exception as error:  # noqa: BLE001 - kaleido raises plain Exceptions with JS traces
            last = error
            if attempt + 1 < attempts and _kaleido_server("running"):
                _kaleido_server("stop")  # the next try starts a new browser
                _kaleido_server("start")
    raise ExportError(f"{fmt.upper()} export failed after {attempts} tries: {one_line(last)}",
                      fix="Check that Chromium runs (`chromium --headless --version`), or export HTML only")


def one_line(error: BaseException | None, limit: int = 160) -> str:
    """The first meaningful line of an error, without JavaScript stack frames, at most ``limit`` characters."""
    text = str(error or "unknown error").strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("at ")]
    line = lines[0] if lines else type(error).__name__
    line = re.sub(r"\s+", " ", line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# writing


def _html(fig: go.Figure, plotlyjs: str) -> str:
    if plotlyjs not in PLOTLYJS_MODES:
        raise ValueError(f"plotlyjs must be one of {PLOTLYJS_MODES}, got {plotlyjs!r}")
    return fig.to_html(include_plotlyjs=True if plotlyjs == "embed" else PLOTLYJS_FILE, full_html=True)


def _write_plotlyjs(folder: Path) -> None:
    """``plotly.min.js`` beside HTML files that load it (rewritten when plotly's version changed)."""
    from plotly.offline import get_plotlyjs

    source = get_plotlyjs()
    path = folder / PLOTLYJS_FILE
    if path.is_file() and path.stat().st_size == len(source.encode()):
        return
    with atomic_write(path) as tmp:
        tmp.write_text(source)


def save_figure(
    fig: go.Figure,
    stem: str | Path,
    formats: Sequence[str] = FORMATS,
    scale: float = 2.0,
    plotlyjs: str = "embed",
) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for each format, all or none; returns the files written.

    Every format is rendered before any file is replaced. Static formats without Chrome are
    skipped with a warning (the HTML is still written). Raises :class:`ExportError` (one line)
    when a render fails after retries; nothing is written then.
    """
    stem = Path(stem)
    formats = check_formats(formats)
    static = [f for f in formats if f in STATIC_FORMATS]
    if static and not chrome_available():
        warnings.warn(f"static figure export skipped ({STATIC_HELP})" + ("; HTML written" if "html" in formats else ""),
                      stacklevel=2)
        static = []
    contents: dict[str, str | bytes] = {}
    if "html" in formats:
        contents["html"] = _html(fig, plotlyjs)
    for fmt in static:  # PNG at ``scale``; PDF/SVG at 1 (vector; kaleido maps 1 px to 0.75 pt, i.e. 96 px per inch)
        contents[fmt] = _render_static(fig, fmt, scale if fmt == "png" else 1.0)
    if "html" in contents and plotlyjs == "beside":
        _write_plotlyjs(stem.parent if stem.parent != Path("") else Path("."))
    written = [stem.with_name(f"{stem.name}.{fmt}") for fmt in contents]
    try:
        with ExitStack() as stack:  # temporaries first; all renamed into place when the block ends
            for path, data in zip(written, contents.values()):
                tmp = stack.enter_context(atomic_write(path))
                tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    except OSError as error:
        raise ExportError(f"could not write {stem}.*: {one_line(error)}", fix="Check that the folder is writable") from error
    return written
