"""Figure export: descriptive unique names, all formats or none, retries, offline HTML, one-line errors."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import pytest
import torch

from interp.viz import export
from interp.viz.export import ExportError, figure_stem, one_line, save_figure

KALEIDO_ERROR = ("Error 525: ReferenceError: kaleido_scopes is not defined\n"
                 "    at render (http://localhost/index.js:12:3)\n    at <anonymous>:1:1")


def _fig() -> go.Figure:
    return go.Figure(go.Heatmap(z=[[0, 1], [1, 0]]))


def test_figure_stem_encodes_the_mask() -> None:
    a = torch.zeros(168, dtype=torch.bool)
    a[[3, 40]] = True
    b = torch.zeros(168, dtype=torch.bool)
    b[[3, 41]] = True
    sa, sb = figure_stem("explorer", "segmentation", "prompt 3", mask=a), figure_stem("explorer", "segmentation", "prompt 3", mask=b)
    assert sa.startswith("explorer_segmentation_prompt-3_2of168-") and sb.startswith("explorer_segmentation_prompt-3_2of168-")
    assert sa != sb and sa == figure_stem("explorer", "segmentation", "prompt 3", mask=a.clone())
    assert figure_stem("x", mask=torch.zeros(5)).endswith("_0of5-" + figure_stem("x", mask=[0] * 5).rsplit("-", 1)[1])


def test_html_renders_offline(tmp_path: Path) -> None:
    embedded, = save_figure(_fig(), tmp_path / "embedded", ["html"])
    text = embedded.read_text()
    assert '<script src="http' not in text and "Plotly.newPlot" in text and len(text) > 1_000_000  # plotly.js inside
    beside, = save_figure(_fig(), tmp_path / "beside", ["html"], plotlyjs="beside")
    assert 'src="plotly.min.js"' in beside.read_text() and (tmp_path / "plotly.min.js").stat().st_size > 1_000_000


def test_a_failed_format_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "chrome_available", lambda: True)
    monkeypatch.setattr(export, "_kaleido_server", lambda action: action != "running" and True)

    def to_image(self, format, scale):  # noqa: A002 - plotly's name
        if format == "svg":
            raise RuntimeError(KALEIDO_ERROR)
        return b"%PDF-1.4" if format == "pdf" else b"\x89PNG"

    monkeypatch.setattr(go.Figure, "to_image", to_image)
    with pytest.raises(ExportError) as caught:
        save_figure(_fig(), tmp_path / "fig", ["html", "png", "pdf", "svg"])
    message = str(caught.value)
    assert "\n" not in message and "kaleido_scopes is not defined" in message and " at " not in message
    assert message.startswith("SVG export failed after 2 tries") and "HTML only" in message
    assert list(tmp_path.iterdir()) == []  # neither the formats that worked nor temporaries


def test_an_intermittent_failure_is_retried_on_a_fresh_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "chrome_available", lambda: True)
    actions = []
    monkeypatch.setattr(export, "_kaleido_server", lambda action: actions.append(action) or True)
    calls = []

    def to_image(self, format, scale):  # noqa: A002
        calls.append(format)
        if len(calls) == 1:
            raise RuntimeError(KALEIDO_ERROR)
        return b"<svg/>" if format == "svg" else b"\x89PNG"

    monkeypatch.setattr(go.Figure, "to_image", to_image)
    files = save_figure(_fig(), tmp_path / "fig", ["png", "svg"])
    assert [p.name for p in files] == ["fig.png", "fig.svg"] and calls == ["png", "png", "svg"]
    assert actions == ["running", "stop", "start"] and (tmp_path / "fig.svg").read_bytes() == b"<svg/>"


def test_one_line_and_formats() -> None:
    assert one_line(RuntimeError(KALEIDO_ERROR)) == "Error 525: ReferenceError: kaleido_scopes is not defined"
    assert export.check_formats("png,svg") == ("png", "svg")
    with pytest.raises(ValueError, match="unknown figure format"):
        export.check_formats(["jpg"])
