"""The explorer's unit grid: the live mask view, one layers x heads block per stack and token group.

One widget (anywidget) draws every unit as a small cell, so the official model's 1152-2176
units cost one widget model, not one per unit. Every mark is in :func:`legend_html` (drawn above
the grid with the same CSS): orange = patched (B), a dark corner = set by hand, a blue outline =
in the pinned set A, a pink ring = the head the attention view shows; coloured by effect, a
cell's colour is its effect alone (blue helps, red hurts) and a patched unit carries a dark
centre square. A click toggles a unit, a shift-click shows that head's attention pattern. Masks
travel as strings of ``0``/``1``, the effect colours as a list of CSS colours.
"""

from __future__ import annotations

from typing import Any, Callable

import traitlets

from interp.taskvectors.units import UnitSpace
from interp.viz.heatmaps import GROUP_LABELS

try:
    import anywidget
except ImportError:  # pragma: no cover - a dependency; named in the error below
    anywidget = None

ESM = r"""
function render({ model, el }) {
  el.classList.add("interp-grid");
  let cells = [];
  function build() {
    el.replaceChildren();
    cells = [];
    const px = model.get("cell_px");
    const labelled = px >= 14;
    for (const b of model.get("blocks")) {
      const box = document.createElement("div");
      box.className = "interp-block";
      const title = document.createElement("div");
      title.className = "interp-block-title";
      title.textContent = b.title;
      box.appendChild(title);
      const grid = document.createElement("div");
      grid.className = "interp-block-grid";
      grid.style.gridTemplateColumns = `14px repeat(${b.heads}, ${px}px)`;
      grid.style.gridAutoRows = `${px}px`;
      for (let l = 0; l < b.units.length; l++) {
        const label = document.createElement("div");
        label.className = "interp-layer";
        label.textContent = (labelled || l % 4 === 0) ? `L${b.layers[l]}` : "";
        grid.appendChild(label);
        for (let h = 0; h < b.heads; h++) {
          const i = b.units[l][h];
          const cell = document.createElement("div");
          if (i >= 0) {
            cell.className = "interp-unit";
            cell.dataset.unit = i;
            cell.title = `${b.stack} L${b.layers[l]} H${h} ${b.label}`;
            if (labelled) cell.textContent = h;
            cells[i] = cell;
          }
          grid.appendChild(cell);
        }
      }
      box.appendChild(grid);
      el.appendChild(box);
    }
  }
  function paint() {
    const mask = model.get("mask"), pinned = model.get("pinned"), ring = model.get("inspect");
    const hand = model.get("clicked"), colours = model.get("colours"), tips = model.get("tips");
    const effect = colours.length > 0;
    el.classList.toggle("interp-effect-mode", effect);
    cells.forEach((cell, i) => {
      cell.classList.toggle("mod-active", mask[i] === "1");
      cell.classList.toggle("interp-in-a", pinned[i] === "1");
      cell.classList.toggle("interp-inspect", ring[i] === "1");
      cell.classList.toggle("interp-hand", hand[i] === "1");
      cell.style.background = effect ? (colours[i] || "#ffffff") : "";
      if (!cell.dataset.base) cell.dataset.base = cell.title;
      cell.title = cell.dataset.base + (tips[i] ? ` · ${tips[i]}` : "");
    });
  }
  el.addEventListener("click", (event) => {
    const cell = event.target.closest(".interp-unit");
    if (!cell) return;
    model.send({ event: event.shiftKey ? "inspect" : "toggle", unit: Number(cell.dataset.unit) });
  });
  model.on("change:blocks", () => { build(); paint(); });
  model.on("change:cell_px", () => { build(); paint(); });
  model.on("change:mask", paint);
  model.on("change:pinned", paint);
  model.on("change:inspect", paint);
  model.on("change:clicked", paint);
  model.on("change:colours", paint);
  build();
  paint();
}
export default { render };
"""

CSS = """
.interp-grid {display: flex; flex-flow: row wrap; gap: 4px 12px; align-items: flex-start; font-size: 10px}
.interp-grid .interp-block-title {font-size: 10px; margin-bottom: 1px; white-space: nowrap}
.interp-grid .interp-block-grid {display: grid; gap: 1px}
.interp-grid .interp-layer {font-size: 8px; line-height: 1; width: 14px; padding-right: 2px; color: #555; align-self: center; white-space: nowrap}
.interp-grid .interp-unit {background: #e4e4e4; border-radius: 2px; font-size: 8px; text-align: center; cursor: pointer;
  display: flex; align-items: center; justify-content: center; color: #333; box-sizing: border-box; user-select: none}
.interp-grid .interp-unit:hover {outline: 1px solid #333}
.interp-grid .interp-unit.mod-active {background: #e69f00; color: #000}
.interp-grid .interp-unit.interp-in-a {border: 2px solid #0072b2}
.interp-grid .interp-unit.interp-inspect {box-shadow: 0 0 0 2px #cc79a7}
.interp-grid .interp-unit {position: relative}
.interp-grid .interp-unit.interp-hand::before {content: ""; position: absolute; left: 0; top: 0; width: 0; height: 0;
  border-top: 5px solid #000; border-right: 5px solid transparent}
.interp-grid.interp-effect-mode .interp-unit.mod-active::after {content: ""; position: absolute; left: 30%; top: 30%;
  width: 40%; height: 40%; background: #222; border-radius: 1px}
.interp-grid.interp-effect-mode .interp-unit.mod-active {color: #fff}
.interp-legend {display: flex; flex-flow: row wrap; gap: 2px 12px; align-items: center; font-size: 11px; line-height: 1.2}
.interp-legend .interp-swatch {display: inline-flex; align-items: center; gap: 4px; white-space: nowrap}
.interp-legend .interp-unit {width: 12px; height: 12px; display: inline-block; cursor: default}
.interp-legend .interp-ramp {width: 60px; height: 10px; display: inline-block; border: 1px solid #ccc}
"""

#: the grid's budget (px): a notebook's output area in a 1280 x 800 JupyterLab window with the file
#: browser open is about 840 px wide; the height leaves room for four rows of controls and the tabs
WIDTH_PX, HEIGHT_PX = 820, 330
LABEL_PX, GAP_PX, TITLE_PX = 16, 12, 14  # layer labels, space between blocks, block titles (see CSS)


def grid_blocks(space: UnitSpace) -> list[dict[str, Any]]:
    """One block per (stack, token group): its title, layers, head count and unit index per (layer, head) (-1: none)."""
    blocks: dict[tuple[str, str | None], dict[str, Any]] = {}
    for i, unit in enumerate(space.units):
        b = blocks.setdefault((unit.stack, unit.group), {"stack": unit.stack, "label": GROUP_LABELS.get(unit.group, unit.group),
                                                         "cells": {}})
        b["cells"][unit.layer, unit.head] = i
    out = []
    for (stack, group), b in blocks.items():
        layers = sorted({layer for layer, _ in b["cells"]})
        heads = max(h for _, h in b["cells"]) + 1
        out.append({"stack": stack, "label": b["label"], "title": f"{stack} · {b['label']}", "layers": layers, "heads": heads,
                    "units": [[b["cells"].get((layer, h), -1) for h in range(heads)] for layer in layers]})
    return out


def grid_size(blocks: list[dict[str, Any]], px: int, width: int = WIDTH_PX) -> tuple[int, int]:
    """(width, height) in px of the blocks at cell size ``px``, wrapped into rows as the CSS flex box does."""
    rows: list[list[dict[str, Any]]] = [[]]
    used = 0
    for b in blocks:
        w = LABEL_PX + b["heads"] * (px + 1)
        if rows[-1] and used + GAP_PX + w > width:
            rows.append([])
            used = 0
        used += w + (GAP_PX if rows[-1] else 0)
        rows[-1].append(b)
    widths = [sum(LABEL_PX + b["heads"] * (px + 1) for b in r) + GAP_PX * (len(r) - 1) for r in rows]
    heights = [TITLE_PX + max(len(b["layers"]) for b in r) * (px + 1) for r in rows]
    return max(widths), sum(heights) + 4 * (len(rows) - 1)


def cell_px(blocks: list[dict[str, Any]], width: int = WIDTH_PX, height: int = HEIGHT_PX) -> int:
    """The largest cell (16 px, with head numbers, down to 6 px) whose grid fits ``width`` x ``height``."""
    for px in range(16, 6, -1):
        w, h = grid_size(blocks, px, width)
        if w <= width and h <= height:
            return px
    return 6


def legend_html(effect: str | None = None, scale: float | None = None) -> str:
    """The grid's legend, one swatch per mark (drawn with the grid's own CSS); ``effect``: what the
    effect colours are (shown when the grid is coloured by effect), ``scale`` the value at full colour."""
    def swatch(classes: str, label: str, style: str = "") -> str:
        return (f"<span class='interp-swatch'><span class='interp-unit {classes}' style='{style}'></span>{label}</span>")

    items = [swatch("", "not patched"), swatch("mod-active", "patched"), swatch("interp-hand", "set by hand (click)"),
             swatch("interp-in-a", "in set A (compare tab)"), swatch("interp-inspect", "head shown in the attention tab")]
    if effect:
        items[:2] = [swatch("", "not patched", "background:#fff"),
                     "<span class='interp-swatch'><span class='interp-unit mod-active' style='background:#fff'></span>patched</span>"]
        ramp = "linear-gradient(to right, rgb(178,24,43), rgb(247,247,247), rgb(33,102,172))"
        items.append(f"<span class='interp-swatch'>−{scale:.3g} <span class='interp-ramp' style='background:{ramp}'></span> "
                     f"+{scale:.3g}: {effect} (blue helps, red hurts)</span>")
    mode = " interp-effect-mode" if effect else ""
    return f"<div class='interp-grid interp-legend{mode}'>{''.join(items)}</div>"


def _bits(mask: Any, n: int) -> str:
    if mask is None:
        return "0" * n
    return "".join("1" if bool(v) else "0" for v in mask)


if anywidget is not None:

    class UnitGrid(anywidget.AnyWidget):
        """The clickable grid; ``on_toggle(unit)`` and ``on_inspect(unit)`` receive the clicks."""

        _esm = ESM
        _css = CSS
        blocks = traitlets.List().tag(sync=True)
        cell_px = traitlets.Int(16).tag(sync=True)
        mask = traitlets.Unicode("").tag(sync=True)
        pinned = traitlets.Unicode("").tag(sync=True)
        inspect = traitlets.Unicode("").tag(sync=True)
        clicked = traitlets.Unicode("").tag(sync=True)
        colours = traitlets.List().tag(sync=True)  # CSS colour per unit (the effect overlay), or [] (patched / not)
        tips = traitlets.List().tag(sync=True)  # extra tooltip text per unit, or []

        def __init__(self, on_toggle: Callable[[int], None], on_inspect: Callable[[int], None], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._on_toggle, self._on_inspect = on_toggle, on_inspect
            self.space: UnitSpace | None = None
            self.on_msg(self._message)

        def _message(self, _widget: Any, content: dict, _buffers: Any) -> None:
            self.click(int(content["unit"]), inspect=content.get("event") == "inspect")

        def click(self, unit: int, inspect: bool = False) -> None:
            """What a click (``inspect``: a shift-click) on unit ``unit`` does."""
            (self._on_inspect if inspect else self._on_toggle)(unit)

        def show(self, space: UnitSpace, mask: Any, pinned: Any = None, inspect: Any = None, clicked: Any = None,
                 colours: list[str] | None = None, tips: list[str] | None = None) -> None:
            """Draw ``space`` (rebuilt only when it changes) with ``mask`` patched, ``pinned`` outlined, ``inspect``
            ringed, ``clicked`` marked as set by hand; ``colours`` (one CSS colour per unit) colours cells by effect."""
            with self.hold_sync():
                if space is not self.space:
                    self.space = space
                    self.blocks = grid_blocks(space)
                    self.cell_px = cell_px(self.blocks)
                n = len(space)
                self.mask, self.pinned, self.inspect = _bits(mask, n), _bits(pinned, n), _bits(inspect, n)
                self.clicked = _bits(clicked, n)
                self.colours, self.tips = list(colours or []), list(tips or [])

        def patched(self) -> list[int]:
            """Indices of the units drawn as patched."""
            return [i for i, c in enumerate(self.mask) if c == "1"]


def unit_grid(on_toggle: Callable[[int], None], on_inspect: Callable[[int], None]) -> Any:
    """A :class:`UnitGrid` (needs ``anywidget``, a dependency of interp)."""
    if anywidget is None:
        raise ImportError("the explorer's unit grid needs anywidget: pip install anywidget (or pip install -e .)")
    return UnitGrid(on_toggle, on_inspect)


__all__ = ["CSS", "ESM", "cell_px", "grid_blocks", "grid_size", "legend_html", "unit_grid"]
