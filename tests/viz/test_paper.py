"""Paper mode: print widths, fonts of at least 7 pt at print size, vector heatmaps, no titles."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from interp.taskvectors.units import UnitSpace
from interp.viz.export import chrome_available
from interp.viz.figures import write_run_figures
from interp.viz.heatmaps import layer_head_heatmap, policy_frame
from interp.viz.paper import MIN_FONT_PT, PAPER_WIDTHS_IN, PX_PER_IN, paper_figure, paper_width_px
from tests.conftest import random_model
from tests.viz.test_figures import make_run

PT_PER_PX = 72 / PX_PER_IN


def test_paper_figure_sizes_fonts_and_vector_cells() -> None:
    model = random_model(0)
    space = UnitSpace.for_model(model, "group")
    probabilities = torch.linspace(0, 1, len(space))
    fig = paper_figure(layer_head_heatmap(policy_frame(space, probabilities), "probability", title="t", zmin=0, zmax=1), "column")
    assert fig.layout.width == paper_width_px("column") == 317 and fig.layout.title.text is None
    assert not [t for t in fig.data if t.type == "heatmap"]  # every cell a rectangle instead
    assert len([s for s in fig.layout.shapes if s.type == "rect"]) == len(space)
    assert {s.fillcolor for s in fig.layout.shapes} >= {"rgb(255, 255, 255)", "rgb(8, 48, 107)"}  # both ends of the scale
    assert fig.layout.coloraxis.colorbar.len == 1.0  # the colour bar spans the panels
    sizes = [fig.layout.font.size] + [a.font.size for a in fig.layout.annotations]
    sizes += [fig.layout[k].tickfont.size for k in fig.layout if k.startswith(("xaxis", "yaxis"))]
    assert min(sizes) * PT_PER_PX >= MIN_FONT_PT
    with pytest.raises(ValueError, match="column"):
        paper_figure(fig, "a4")


def _svg_font_px(svg: str) -> list[float]:
    return [float(x) for x in re.findall(r"font-size:\s*([0-9.]+)px", svg)]


@pytest.mark.slow
@pytest.mark.parametrize("width", ["column", "page"])
def test_exported_pdf_and_svg_are_print_size(tmp_path: Path, width: str) -> None:
    if not chrome_available():
        pytest.skip("kaleido or Chromium absent here: static export is checked where they are (CI)")
    run = make_run(tmp_path, random_model(0))
    out = tmp_path / width
    written = write_run_figures(run, formats=("pdf", "svg"), out_dir=out, only=["results", "taskness"], width=width)
    assert {p.name for p in written} == {f"{s}.{f}" for s in ("results", "results_composition", "taskness") for f in ("pdf", "svg")}
    for pdf in out.glob("*.pdf"):
        box = re.search(rb"/MediaBox \[\s*0 0 ([0-9.]+) ([0-9.]+)\]", pdf.read_bytes())
        assert box, f"{pdf.name}: no MediaBox"
        assert float(box.group(1)) / 72 == pytest.approx(PAPER_WIDTHS_IN[width], abs=0.01), pdf.name
    for svg in out.glob("*.svg"):
        text = svg.read_text()
        assert float(re.search(r'<svg[^>]* width="([0-9.]+)"', text).group(1)) == paper_width_px(width)
        fonts = _svg_font_px(text)
        assert fonts and min(fonts) * PT_PER_PX >= MIN_FONT_PT, f"{svg.name}: smallest font {min(fonts)} px"
    taskness = (out / "taskness.svg").read_text()
    assert "<image" not in taskness and b"/Subtype /Image" not in (out / "taskness.pdf").read_bytes()  # vector cells
    assert "<text" in taskness and ">Taskness" not in taskness  # no baked-in title


def test_cli_figures_options_reach_the_writer(tmp_path: Path, capsys) -> None:
    from interp import cli

    run = make_run(tmp_path, random_model(0))
    out = tmp_path / "paper"
    assert cli.main(["figures", str(run), "--formats", "html", "--out", str(out), "--only", "results",
                     "--only", "reinforce-curves", "--width", "column"]) == 0
    assert sorted(p.name for p in out.glob("*.html")) == ["reinforce_curves.html", "results.html", "results_composition.html"]
    html = (out / "results.html").read_text()
    assert '"width":317' in html.replace(" ", "") and (out / "plotly.min.js").exists()  # paper width; offline
