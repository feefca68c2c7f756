"""The patch explorer works in a real browser: JupyterLab + headless Chromium, end to end.

Starts ``jupyter lab`` (headless, random token, free port) on a copy of
``notebooks/04_patch_explorer.ipynb``, opens it in Debian's Chromium through playwright, runs
all cells, waits for the explorer's image row, moves the *prompt* slider with the keyboard and
checks that the patched prediction image changes, clicks units of the grid (mask and prediction
change), pins them as set A and checks the compare tab, shift-clicks a unit for its head's
attention, and checks the explorer fits 1280 x 800. Screenshots (before, after, or at the
failure) are saved under the test's temporary directory, whose path the failure message gives
together with the page's error outputs and the end of the JupyterLab log.

Needs ``/usr/bin/chromium`` (or ``$INTERP_CHROMIUM``), ``jupyterlab`` and ``playwright`` (the
Python package; its bundled browsers are NOT used or downloaded). Skips with the reason when
one is missing (fails instead where ``INTERP_REQUIRE_BROWSER=1``, as ``.ci/run`` sets: CI installs all
three, the browser in ``.ci/run``, the packages with the ``dev`` extra). Marked ``browser``.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "04_patch_explorer.ipynb"
CHROMIUM = Path(os.environ.get("INTERP_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
SERVER_TIMEOUT_S = 90  # JupyterLab answering
RUN_TIMEOUT_S = float(os.environ.get("INTERP_BROWSER_TIMEOUT", 240))  # all cells run, widget images shown
CHANGE_TIMEOUT_S = 90  # the patched image redrawn after the slider moved
PATCHED = 2  # image order: one-shot, zero-shot, patched, target, the prompt (2 x 2), then the compare tab's
SHOWN = 5
#: the explorer's height budget: JupyterLab at 1280 x 800 shows ~700 px of a notebook; with predictions large
#: enough to judge (180 px) and the legend, the explorer scrolls by at most ~150 px more (never sideways)
MAX_HEIGHT_PX = 850
SCREENSHOT = ROOT / "figures" / "explorer.png"  # the README's picture of the explorer, remade by every run

pytestmark = [pytest.mark.browser, pytest.mark.notebooks]


def _requirements() -> None:
    """Skip (fail where ``INTERP_REQUIRE_BROWSER=1``, as in CI) when something the test needs is missing."""
    missing = pytest.fail if os.environ.get("INTERP_REQUIRE_BROWSER") == "1" else pytest.skip
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) or set INTERP_CHROMIUM")
    for module, why in (("jupyterlab", "pip install jupyterlab"), ("playwright", "pip install playwright (the Python package only)"),
                        ("ipywidgets", "pip install ipywidgets")):
        try:
            __import__(module)
        except ImportError:
            missing(f"the browser test needs {module}: {why}, or pip install -e '.[dev]'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _start_lab(lab_root: Path, work: Path, port: int, token: str) -> tuple[subprocess.Popen, Path]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["JUPYTER_CONFIG_DIR"] = str(work / "config")  # no user config, no state left behind
    env["JUPYTER_RUNTIME_DIR"] = str(work / "runtime")
    env["JUPYTER_DATA_DIR"] = str(work / "data")  # a user's own kernelspecs and extensions cannot interfere
    env["TQDM_DISABLE"] = "1"
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        f"--ServerApp.token={token}", f"--port={port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={lab_root}", "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={work / 'settings'}", f"--LabApp.workspaces_dir={work / 'workspaces'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    settings = work / "settings" / "@jupyterlab"
    for plugin, values in (("apputils-extension/notification", '{"fetchNews": "false", "checkForUpdates": false, "doNotDisturbMode": true}'),
                           ("docmanager-extension/plugin", '{"autosave": false}')):
        (settings / f"{plugin}.jupyterlab-settings").parent.mkdir(parents=True, exist_ok=True)
        (settings / f"{plugin}.jupyterlab-settings").write_text(values)
    log = work / "jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=lab_root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, log


def _wait_for_server(proc: subprocess.Popen, log: Path, port: int, token: str) -> None:
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}; its log:\n{_tail(log)}", pytrace=False)
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer on port {port} within {SERVER_TIMEOUT_S} s; its log:\n{_tail(log)}", pytrace=False)


def _stop(proc: subprocess.Popen) -> None:
    """Stop JupyterLab and its kernels (its own process group, started by this test)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# JavaScript run in the page -------------------------------------------------------------------

RUN_ALL = """
async () => {
  const app = window.jupyterapp;
  if (!app) return 'no window.jupyterapp';
  await app.restored;
  const panel = app.shell.currentWidget;
  if (!panel || !panel.sessionContext) return 'no notebook panel';
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.commands.execute('notebook:run-all-cells');  // not awaited: the test polls for the result
  return 'ok';
}
"""

KERNEL_STATUS = """
() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (kernel) return kernel.status;
  const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator[data-status]');  // toolbar, without the app
  return indicator ? indicator.getAttribute('data-status') : 'none';
}
"""

IMAGE_BYTES = """
async (img) => {
  if (!img.src) return '';
  const buffer = await (await fetch(img.src)).arrayBuffer();
  let binary = '';
  for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
  return btoa(binary);
}
"""


def _page_report(page, shots: Path) -> str:
    """What went wrong, as far as the page tells: error outputs and the end of the notebook's text."""
    lines = []
    try:
        page.screenshot(path=str(shots / "failure.png"), full_page=True)
        lines.append(f"screenshot: {shots / 'failure.png'}")
    except Exception as error:  # noqa: BLE001 - a report, not a check
        lines.append(f"(no screenshot: {error})")
    try:
        errors = page.locator("[data-mime-type='application/vnd.jupyter.stderr'], .jp-OutputArea-output pre")
        texts = [t for t in errors.all_inner_texts() if "Error" in t or "Traceback" in t]
        if texts:
            lines.append("error outputs:\n" + "\n---\n".join(t[-2000:] for t in texts[-3:]))
        lines.append(f"kernel status: {page.evaluate(KERNEL_STATUS)}")
        lines.append("end of the page text:\n" + page.inner_text("body")[-2500:])
    except Exception as error:  # noqa: BLE001
        lines.append(f"(page text unavailable: {error})")
    return "\n".join(lines)


def _screenshot(page, widget, path: Path) -> None:
    """The window (``path``) and the explorer alone (``<stem>_widget.png``)."""
    page.screenshot(path=str(path))
    widget.screenshot(path=str(path.with_name(f"{path.stem}_widget.png")))


def _wait(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def test_explorer_slider_changes_prediction(tmp_path: Path) -> None:
    _requirements()
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    lab_root = tmp_path / "lab"
    (lab_root / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOK, lab_root / "notebooks" / NOTEBOOK.name)  # a copy: autosave never touches the repository
    work = tmp_path / "work"
    work.mkdir()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    token = secrets.token_hex(16)
    port = _free_port()
    proc, log = _start_lab(lab_root, work, port, token)
    try:
        _wait_for_server(proc, log, port, token)
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(work / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900},
            )
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            try:
                _drive_explorer(page, port, token, shots)
            except (PlaywrightError, AssertionError) as error:
                raise AssertionError(f"{error}\n{_page_report(page, shots)}\njupyter lab log (end):\n{_tail(log, 1500)}") from None
            finally:
                context.close()
    finally:
        _stop(proc)


def _drive_explorer(page, port: int, token: str, shots: Path) -> None:
    page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/{NOTEBOOK.name}?token={token}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=SERVER_TIMEOUT_S * 1000)
    exposed = _wait(lambda: page.evaluate("() => !!window.jupyterapp"), 30)
    assert _wait(lambda: page.evaluate(KERNEL_STATUS) == "idle", 120), f"kernel not idle: {page.evaluate(KERNEL_STATUS)}"

    started = page.evaluate(RUN_ALL) if exposed else "window.jupyterapp not exposed"
    if started != "ok":  # fall back on the menu: Run > Run All Cells
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

    images = page.locator(".jp-OutputArea-output .widget-image")
    start = time.monotonic()
    ready = _wait(lambda: images.count() >= SHOWN and all(images.nth(i).get_attribute("src") for i in range(SHOWN)), RUN_TIMEOUT_S, 1.0)
    assert ready, f"the explorer's images did not appear within {RUN_TIMEOUT_S:.0f} s of Run All (started: {started})"
    assert _wait(lambda: page.evaluate(KERNEL_STATUS) == "idle", 60), "the kernel stayed busy after the last cell"
    print(f"notebook ran in the browser in {time.monotonic() - start:.1f} s")

    patched = images.nth(PATCHED)
    widget = page.locator(".jp-OutputArea-output", has=page.locator(".widget-image")).last
    widget.scroll_into_view_if_needed()
    before = patched.evaluate(IMAGE_BYTES)
    assert base64.b64decode(before)[:8] == b"\x89PNG\r\n\x1a\n", "the patched prediction is not a PNG image"
    _screenshot(page, widget, shots / "before.png")

    slider = page.locator(".widget-slider", has=page.locator("label", has_text=re.compile(r"^prompt$"))).first
    readout = slider.locator(".widget-readout")
    value_before = readout.inner_text().strip()
    handle = slider.locator(".noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")
    if _wait(lambda: readout.inner_text().strip() != value_before, 10) is None:  # keyboard ignored: drag instead
        box = handle.bounding_box()
        track = slider.locator(".noUi-target").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(track["x"] + track["width"] * 0.3, box["y"] + box["height"] / 2, steps=8)
        page.mouse.up()
    value_after = _wait(lambda: (v := readout.inner_text().strip()) != value_before and v, 10)
    assert value_after, f"the prompt slider did not move (readout stays {value_before!r})"

    after = _wait(lambda: (b := patched.evaluate(IMAGE_BYTES)) != before and b, CHANGE_TIMEOUT_S)
    _screenshot(page, widget, shots / "after.png")
    assert after, (f"the patched prediction did not change within {CHANGE_TIMEOUT_S} s after the prompt slider "
                   f"moved from {value_before} to {value_after}")
    print(f"prompt {value_before} -> {value_after}: patched prediction changed; screenshots in {shots}")

    # click units of the grid (the decoder's target-token heads of its last layer): the mask and the prediction change
    summary = page.locator(".widget-html", has_text=re.compile(r"units patched|nothing patched")).last
    mask_before, image_before = summary.inner_text(), patched.evaluate(IMAGE_BYTES)
    cells = page.locator(".interp-unit[title^='decoder L2 '][title*=' target']")
    assert cells.count() >= 4, f"no unit grid: {cells.count()} decoder target cells found"
    for i in range(4):
        cells.nth(i).click()
        _wait(lambda: re.search(rf"\b{i + 1} of \d+ units patched", summary.inner_text()), 30)
    mask_after = summary.inner_text()
    assert re.search(r"\b4 of \d+ units patched", mask_after), f"after 4 clicks the summary says: {mask_after!r} (before: {mask_before!r})"
    changed = _wait(lambda: (b := patched.evaluate(IMAGE_BYTES)) != image_before and b, CHANGE_TIMEOUT_S)
    assert changed, "the patched prediction did not change after clicking 4 units"
    assert "mod-active" in (cells.nth(0).get_attribute("class") or ""), "a clicked unit is not shown as patched"
    print(f"clicked 4 units: {mask_after.splitlines()[1] if len(mask_after.splitlines()) > 1 else mask_after}")
    page.set_viewport_size({"width": 1280, "height": 800})
    _fits_beside_the_file_browser(page, widget, shots)
    _compare_and_attention(page, widget, cells, summary, shots)
    page.locator(".lm-TabBar-tab", has_text=re.compile(r"^prediction$")).click()
    widget.scroll_into_view_if_needed()
    box = widget.bounding_box()
    assert box["width"] <= 1280 and box["height"] <= MAX_HEIGHT_PX, \
        f"the explorer is {box['width']:.0f} x {box['height']:.0f} px: over {MAX_HEIGHT_PX} px tall"
    page.set_viewport_size({"width": 1280, "height": 1000})  # the whole explorer in the README's picture
    page.wait_for_timeout(500)
    widget.scroll_into_view_if_needed()
    widget.screenshot(path=str(SCREENSHOT))
    print(f"screenshot {SCREENSHOT} ({box['width']:.0f} x {box['height']:.0f} px)")
    _screenshot(page, widget, shots / "final.png")


FILE_BROWSER_OPEN = """
async () => {
  const app = window.jupyterapp;
  if (!app) return 'no app';
  if (app.shell.leftCollapsed) await app.commands.execute('filebrowser:activate');
  return app.shell.leftCollapsed ? 'collapsed' : 'open';
}
"""

OVERFLOWING = """
(root) => {
  const out = [];
  for (const el of [root, ...root.querySelectorAll('*')]) {
    const style = getComputedStyle(el);
    if (el.scrollWidth > el.clientWidth + 1 && ['auto', 'scroll'].includes(style.overflowX) && el.clientWidth > 0)
      out.push(`${el.tagName.toLowerCase()}.${[...el.classList].join('.')} ${el.scrollWidth}>${el.clientWidth}`);
  }
  return out;
}
"""


def _fits_beside_the_file_browser(page, widget, shots: Path) -> None:
    """At 1280 x 800 with JupyterLab's file browser open: no horizontal scrollbar in the explorer's output,
    and in the one-shot layout (more token groups) every control, the heads' *none* button included, inside it."""
    assert page.evaluate(FILE_BROWSER_OPEN) == "open", "could not open JupyterLab's file browser"
    page.wait_for_timeout(500)
    area = page.locator(".jp-OutputArea-output", has=page.locator(".widget-image")).last
    for layout in ("one-shot", "zero-shot"):
        widget.locator("button", has_text=re.compile(rf"^{layout}$")).click()
        page.wait_for_timeout(1500)
        box = area.bounding_box()
        overflowing = area.evaluate(OVERFLOWING)
        _screenshot(page, widget, shots / f"file_browser_{layout}.png")
        assert not overflowing, f"{layout}, file browser open: horizontal scrollbars in {overflowing} (output {box['width']:.0f} px)"
        none = widget.locator("button", has_text=re.compile(r"^none$")).first
        b = none.bounding_box()
        assert b and b["x"] + b["width"] <= box["x"] + box["width"] + 1, f"{layout}: the heads' 'none' button is clipped ({b} vs {box})"
        for image in widget.locator(".widget-image").all()[:SHOWN]:
            i = image.bounding_box()
            assert i["x"] + i["width"] <= box["x"] + box["width"] + 1, f"{layout}: an image leaves the output area ({i} vs {box})"
    print(f"file browser open: the explorer fits its {box['width']:.0f} px output area in both layouts")


def _compare_and_attention(page, widget, cells, summary, shots: Path) -> None:
    """Pin the 4 units as A, add a fifth to B: the compare tab shows A, B and B - A; a shift-click shows a head's attention."""
    page.locator(".lm-TabBar-tab", has_text="compare A / B").click()
    widget.locator("button", has_text="pin B as A").click()
    _wait(lambda: "interp-in-a" in (cells.nth(0).get_attribute("class") or ""), 30)
    assert "interp-in-a" in (cells.nth(0).get_attribute("class") or ""), "pinning did not outline set A on the grid"
    cells.nth(4).click()
    table = widget.locator(".interp-compare")
    assert _wait(lambda: table.count() and "(5 units)" in table.inner_text() and "(4 units)" in table.inner_text(), 30), \
        f"the compare tab does not show A (4 units) and B (5 units): {table.inner_text() if table.count() else 'no table'}"
    assert "B − A" in table.inner_text()
    _screenshot(page, widget, shots / "compare.png")
    tall = widget.bounding_box()["height"]
    assert tall <= MAX_HEIGHT_PX, f"with the compare tab the explorer is {tall:.0f} px tall (budget {MAX_HEIGHT_PX})"
    cells.nth(1).click(modifiers=["Shift"])  # its head's attention, in the attention tab
    plot = widget.locator(".js-plotly-plot")
    assert _wait(lambda: plot.count() >= 1, 60), "shift-click on a unit did not draw its head's attention pattern"
    assert re.search(r"decoder L2 H\d+", widget.inner_text()), "the attention tab does not name the head it shows"
    _screenshot(page, widget, shots / "attention.png")
    tall = widget.bounding_box()["height"]
    assert tall <= MAX_HEIGHT_PX, f"with the attention tab the explorer is {tall:.0f} px tall (budget {MAX_HEIGHT_PX})"
    modebar, plot_box = widget.locator(".modebar").first, plot.first.bounding_box()
    if modebar.count():  # plotly's toolbar inside the figure, not cut off by the output area
        m, area = modebar.bounding_box(), widget.bounding_box()
        assert m is None or (m["y"] >= area["y"] and m["x"] + m["width"] <= area["x"] + area["width"] + 1), \
            f"the attention figure's toolbar is clipped ({m} vs {area}, plot {plot_box})"
    print(f"compare tab: A 4 units, B 5 units, B - A shown; shift-click drew the head's attention ({tall:.0f} px tall)")


def test_exported_html_renders_offline(tmp_path: Path) -> None:
    """An exported figure's HTML draws its plot in Chromium with every network request refused."""
    _requirements()
    import plotly.graph_objects as go
    from playwright.sync_api import sync_playwright

    from interp.viz.export import save_figure

    path, = save_figure(go.Figure(go.Heatmap(z=[[0, 1], [1, 0]])), tmp_path / "offline", ["html"])
    refused = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.route(re.compile(r"^(?!file:).*"), lambda route: (refused.append(route.request.url), route.abort()))
        page.goto(path.as_uri())
        drawn = page.wait_for_selector(".main-svg .heatmaplayer image, .main-svg .hm", timeout=30_000, state="attached")
        browser.close()
    assert drawn is not None, "the heatmap was not drawn offline"
    assert not [u for u in refused if not u.startswith("data:")], f"the page asked the network for {refused}"
