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
    assert {s.fillcolor for s in fig.layout.shapes} >= {"rgb(224, 224, 224)", "rgb(8, 48, 107)"}  # both ends of the scale
    assert "rgb(255, 255, 255)" not in {s.fillcolor for s in fig.layout.shapes}  # probability 0 is not the background
    bar = fig.layout.coloraxis.colorbar
    assert bar.orientation == "h" and bar.len < 0.5  # in the encoder's missing target panel, not stretched over the panels
    heads = UnitSpace.for_model(model, "head")
    per_head = paper_figure(layer_head_heatmap(policy_frame(heads, torch.linspace(0, 1, len(heads))), "probability"), "column")
    assert per_head.layout.coloraxis.colorbar.len == 1.0  # no missing panel: the colour bar spans the panels
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


def _official_taskness_frame():
    """A taskness-like table of the official model's shape: 24 encoder, 8 decoder layers, 16 heads, token groups."""
    import numpy as np
    import pandas as pd

    rows = [(stack, layer, head, group, float(np.random.default_rng(layer * 31 + head).random()))
            for stack, layers, groups in (("encoder", 24, ("cls", "query")), ("decoder", 8, ("cls", "query", "target")))
            for group in groups for layer in range(layers) for head in range(16)]
    return pd.DataFrame(rows, columns=["stack", "layer", "head", "group", "taskness"])


@pytest.mark.parametrize("width", ["column", "page"])
def test_side_by_side_panels_leave_room_for_tick_labels(width: str) -> None:
    """The decoder's layer labels (and every panel's head labels) fit beside / under their panel at print size.

    Glyph widths are bounded below by half the font size per digit: a gap narrower than the right
    panel's longest layer label plus its tick means the labels overprint the encoder panel.
    """
    fig = paper_figure(layer_head_heatmap(_official_taskness_frame(), "taskness"), width)
    side = lambda k: fig.layout.margin[k] if fig.layout.margin[k] is not None else fig.layout.template.layout.margin[k]  # noqa: E731
    plot_px = fig.layout.width - side("l") - side("r")
    pairs = 0
    for name in [k for k in fig.layout if k.startswith("xaxis")]:
        x = fig.layout[name]
        y = fig.layout["yaxis" + x.anchor[1:]]
        font = y.tickfont.size
        neighbours = [fig.layout[k].domain[1] for k in fig.layout if k.startswith("xaxis") and fig.layout[k].domain[1] <= x.domain[0]]
        if neighbours and y.visible is not False:
            layers = 8 if x.domain[0] > 0.3 else 24  # the decoder panels sit right
            gap = (x.domain[0] - max(neighbours)) * plot_px
            assert gap >= len(str(layers - 1)) * 0.5 * font + 5 + 3, f"{name}: {gap:.1f} px between panels"
            pairs += 1
        labels = -(-16 // int(x.dtick or 1))  # head labels shown
        panel = (x.domain[1] - x.domain[0]) * plot_px
        assert labels * 2 * 0.5 * x.tickfont.size <= panel, f"{name}: {labels} head labels in {panel:.0f} px"
    assert pairs == 3  # one decoder panel per token-group row


def test_wide_image_table_is_transposed_at_column_width() -> None:
    """Prompts x 7 cells at 3.3 in: one column per prompt (titles above), one row per cell (titles left, horizontal)."""
    from interp.viz.prompts import image_rows

    names = ("example input", "example output", "query", "target", "one-shot", "zero-shot", "zero-shot + task vector")
    rows = [[torch.rand(3, 8, 8) for _ in names] for _ in range(4)]
    fig = paper_figure(image_rows(rows, ["segmentation", "lowlight", "inpainting", "colorization"], names), "column")
    columns = sorted({tuple(fig.layout[k].domain) for k in fig.layout if k.startswith("xaxis")})
    lines = sorted({tuple(fig.layout[k].domain) for k in fig.layout if k.startswith("yaxis")})
    assert (len(columns), len(lines)) == (4, 7) and fig.layout.width == paper_width_px("column")
    plot_px = fig.layout.width - fig.layout.margin.l - fig.layout.margin.r
    above = [a for a in fig.layout.annotations if a.yanchor == "bottom"]
    left = [a for a in fig.layout.annotations if a.xanchor == "right"]
    assert [a.text for a in above] == ["segmentation", "lowlight", "inpainting", "colorization"]
    assert [a.text.replace("<br>", " ") for a in left] == list(names) and all(a.textangle in (None, 0) for a in left)
    pitch = (columns[1][0] - columns[0][0]) * plot_px
    font = max(a.font.size for a in fig.layout.annotations)
    assert font * PT_PER_PX >= MIN_FONT_PT
    assert all(len(a.text) * 0.5 * font <= pitch for a in above)  # column titles clear of each other
    assert all(max(len(s) for s in a.text.split("<br>")) * 0.5 * font <= fig.layout.margin.l for a in left)
    cell_w = (columns[0][1] - columns[0][0]) * plot_px
    cell_h = (lines[0][1] - lines[0][0]) * (fig.layout.height - fig.layout.margin.t - fig.layout.margin.b)
    assert cell_w == pytest.approx(cell_h, rel=0.02) and cell_w > 50  # square cells, larger than the untransposed ~38 px


def test_exported_legends_and_colour_bars_fit(tmp_path: Path) -> None:
    """In the files kaleido writes: every legend lies inside the page, under the panels (never over a
    subplot title); the taskness colour bar's labels are upright."""
    if not chrome_available():
        pytest.skip("kaleido or Chromium absent here: static export is checked where they are (CI)")
    run = make_run(tmp_path, random_model(0))
    screen = write_run_figures(run, formats=("svg",), out_dir=tmp_path / "screen", only=["results", "reinforce-curves"])
    column = write_run_figures(run, formats=("svg",), out_dir=tmp_path / "column", only=["taskness"], width="column")
    for svg in screen + column:
        text = svg.read_text()
        height = float(re.search(r'<svg[^>]* height="([0-9.]+)"', text).group(1))
        legend = re.search(r'<g class="legend"[^>]*transform="translate\(([0-9.]+),([0-9.]+)\)"><rect class="bg"[^>]*height="([0-9.]+)"', text)
        if legend is None:
            continue
        top, box = float(legend.group(2)), float(legend.group(3))
        assert top + box <= height + 0.5, f"{svg.name}: legend cut off ({top} + {box} > {height})"
        titles = [float(y) for y in re.findall(r'<g class="annotation"[^>]*><g class="annotation-text-g" transform="rotate\([0-9.-]+,[0-9.]+,([0-9.]+)\)', text)]
        assert titles and all(top > y for y in titles), f"{svg.name}: legend over a title"
    taskness = (tmp_path / "column" / "taskness.svg").read_text()
    bar = taskness[taskness.index('class="cbaxis'):]
    bar = bar[: bar.index("</g></g>")]
    assert "<text" in bar and "rotate(" not in bar  # upright colour bar labels
