"""Writing figures: HTML always, static PNG/PDF/SVG through kaleido when a Chrome is present.

kaleido (>= 1.0) drives a headless Chrome or Chromium; on Debian that is the ``chromium``
package (``/usr/bin/chromium``), which kaleido finds by itself. Where none is installed the
static formats are skipped with one warning that says how to get them, so a run never fails
for want of a browser.

Each static export through plain kaleido starts a browser (seconds). :func:`export_session`
keeps one headless Chrome open for a block of exports (kaleido's sync server), which is what
``interp figures RUN_DIR`` uses to write every figure of a run.
"""

from __future__ import annotations

import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import plotly.graph_objects as go

from interp.run import atomic_path

STATIC_FORMATS = ("png", "pdf", "svg")
FORMATS = ("html", *STATIC_FORMATS)
#: how to get static figures where they were skipped
STATIC_HELP = (
    "PNG/PDF/SVG need kaleido and a Chrome or Chromium: `pip install kaleido` and "
    "`apt-get install chromium` (Debian/Ubuntu; or set BROWSER_PATH to a Chrome binary), "
    "then run `interp figures RUN_DIR` again"
)
CHROME_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


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
        formats = (formats,)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown figure format(s) {unknown}; choose from {FORMATS}")
    return tuple(formats)


@contextmanager
def export_session() -> Iterator[bool]:
    """Keep one headless Chrome open for the static exports inside the block.

    Yields whether static export is possible at all. Without kaleido's sync server (kaleido
    < 1.1) or without Chrome this is a no-op; a server someone else started is left running.
    """
    if not chrome_available():
        yield False
        return
    import kaleido

    server = getattr(kaleido, "_global_server", None)  # kaleido >= 1.1: one browser for all sync calls
    running = bool(server is not None and getattr(server, "is_running", lambda: False)())
    started = False
    if hasattr(kaleido, "start_sync_server") and not running:
        kaleido.start_sync_server(silence_warnings=True)
        started = True
    try:
        with warnings.catch_warnings():  # plotly passes per-call options a shared server ignores
            warnings.filterwarnings("ignore", message="The kopts argument is ignored")
            yield True
    finally:
        if started:
            kaleido.stop_sync_server(silence_warnings=True)


def save_figure(fig: go.Figure, stem: str | Path, formats: Sequence[str] = ("html", *STATIC_FORMATS), scale: float = 2.0) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for each format; returns the files written."""
    stem = Path(stem)
    formats = check_formats(formats)
    written = []
    if "html" in formats:
        path = stem.with_suffix(".html")
        with atomic_path(path) as tmp:
            fig.write_html(tmp, include_plotlyjs="cdn", full_html=True)
        written.append(path)
    static = [f for f in formats if f in STATIC_FORMATS]
    if static and not chrome_available():
        wrote = "; HTML files were written" if written else ""
        warnings.warn(f"static figure export skipped ({STATIC_HELP}){wrote}.", stacklevel=2)
        return written
    for fmt in static:
        path = stem.with_suffix(f".{fmt}")
        with atomic_path(path) as tmp:
            fig.write_image(tmp, format=fmt, scale=scale if fmt == "png" else 1.0)
        written.append(path)
    return written
