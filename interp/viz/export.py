"""Writing figures: HTML always, static PNG/PDF/SVG through kaleido when a Chrome is present.

kaleido (>= 1.0) drives a headless Chrome or Chromium; on Debian that is the ``chromium``
package (``/usr/bin/chromium``), which kaleido finds by itself. Where none is installed the
static formats are skipped with one warning that says how to get them, so a run never fails
for want of a browser.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Sequence

import plotly.graph_objects as go

from interp.run import atomic_path

STATIC_FORMATS = ("png", "pdf", "svg")


def chrome_available() -> bool:
    """Whether kaleido and a Chrome/Chromium binary are both present."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome", "chrome"))


def save_figure(fig: go.Figure, stem: str | Path, formats: Sequence[str] = ("html", *STATIC_FORMATS), scale: float = 2.0) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for each format; returns the files written."""
    stem = Path(stem)
    written = []
    if "html" in formats:
        path = stem.with_suffix(".html")
        with atomic_path(path) as tmp:
            fig.write_html(tmp, include_plotlyjs="cdn", full_html=True)
        written.append(path)
    static = [f for f in formats if f in STATIC_FORMATS]
    if static and not chrome_available():
        warnings.warn(
            "static figure export skipped: it needs kaleido and Chromium "
            "(pip install kaleido; apt-get install chromium). HTML files were written.",
            stacklevel=2,
        )
        return written
    for fmt in static:
        path = stem.with_suffix(f".{fmt}")
        with atomic_path(path) as tmp:
            fig.write_image(tmp, format=fmt, scale=scale if fmt == "png" else 1.0)
        written.append(path)
    return written
