"""The README runs as written: its Python snippets in order, its ``interp`` command lines parse.

Every fenced ``python`` block of README.md is executed, in order, in one namespace (later
snippets use what earlier ones defined, as a reader pasting them into one session would), on the
bundled tiny model. Two kinds of snippet need what a clone does not hold, and are guarded:

* the **official weights** (``checkpoint-1000.pth``, the MAE-VQGAN of *Visual Prompting via Image
  Inpainting*, github amirbar/visual_prompting; ``last.ckpt``, taming-transformers'
  ``vqgan_imagenet_f16_1024``): when ``INTERP_OFFICIAL_MAE`` and ``INTERP_OFFICIAL_VQGAN`` name
  the files, the snippet runs on them; otherwise its ``load_official(...)`` line is replaced by
  the tiny model (the rest of the snippet is unchanged, so it still runs as written);
* **Pascal-5i** (VOC2012 with SBD masks): run when ``INTERP_PASCAL`` names the VOC2012 folder,
  skipped otherwise (the snippets after it do not depend on it).

Every ``interp ...`` line of the README's ``bash`` blocks (and ``torchrun ... -m interp.cli --``
lines) must parse with the real parser, in a folder where the run directories it names exist;
lines that ask for CUDA are parsed only where CUDA is there.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
OFFICIAL_LINE = re.compile(r"^(\s*)model = load_official\(.*\)", re.M)


def _blocks(language: str) -> list[tuple[int, str]]:
    """``(line, source)`` of every fenced block of ``language``, in order."""
    blocks, current, start = [], None, 0
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        if current is None and line.strip() == f"```{language}":
            current, start = [], number
        elif current is not None and line.strip() == "```":
            blocks.append((start, "\n".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _needs_pascal(source: str) -> bool:
    return "pascal" in source.lower().replace("syntheticpascal", "")


def test_the_readme_has_python_snippets() -> None:
    blocks = _blocks("python")
    assert len(blocks) >= 6
    assert any("load_official" in s for _, s in blocks) and any("SyntheticPascal" in s for _, s in blocks)


@pytest.mark.slow  # ~50 s on a loaded 2-core machine: the snippets build 1000-prompt sets and collect seven tasks
def test_python_snippets_run_in_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import plotly.graph_objects as go
    import torch

    monkeypatch.setattr(go.Figure, "show", lambda self, *a, **k: None)  # no browser in a test
    monkeypatch.chdir(tmp_path)  # anything a snippet writes lands here
    official = [os.environ.get("INTERP_OFFICIAL_MAE"), os.environ.get("INTERP_OFFICIAL_VQGAN")]
    pascal = os.environ.get("INTERP_PASCAL")
    namespace: dict = {"__name__": "readme"}
    ran, skipped = 0, []
    threads = torch.get_num_threads()
    try:
        for line, source in _blocks("python"):
            if _needs_pascal(source) and not pascal:
                skipped.append(line)  # needs VOC2012: INTERP_PASCAL=<VOC2012 dir> runs it
                continue
            if pascal:
                source = source.replace('"~/data/VOCdevkit/VOC2012"', repr(pascal))
            if OFFICIAL_LINE.search(source):
                if all(official):
                    source = source.replace('"checkpoint-1000.pth"', repr(official[0])).replace('"last.ckpt"', repr(official[1]))
                else:  # the bundled tiny model stands in for the official weights
                    source = OFFICIAL_LINE.sub(r'\1import interp\n\1model = interp.load_model("tiny")', source)
            script = tmp_path / f"readme_line{line}.py"  # a file: nnsight reads a trace's source back from it
            script.write_text(source)
            try:
                exec(compile(source, str(script), "exec"), namespace)  # noqa: S102 - the README's own code
            except Exception as error:  # noqa: BLE001 - name the snippet
                raise AssertionError(f"the README's Python block at line {line} fails: {type(error).__name__}: {error}") from error
            ran += 1
    finally:
        torch.set_num_threads(threads)
    assert ran >= 5 and len(skipped) <= 2, (ran, skipped)
    assert "model" in namespace and "logits" in namespace  # the hooks example and the pipeline example ran


def _interp_lines() -> list[tuple[int, list[str]]]:
    """Every ``interp`` command of the bash blocks (``NAME="..."`` variables expanded, ``&&`` split)."""
    out = []
    for line, source in _blocks("bash"):
        variables: dict[str, str] = {}
        for offset, text in enumerate(source.splitlines()):
            assignment = re.fullmatch(r"(\w+)=(.*)", text.strip())
            if assignment:
                variables[assignment.group(1)] = " ".join(shlex.split(assignment.group(2)))
                continue
            for name, value in variables.items():
                text = text.replace(f"${name}", value)
            for command in text.split("&&"):
                words = shlex.split(command, comments=True)
                if words[:1] == ["interp"]:
                    out.append((line + offset + 1, words[1:]))
                elif words[:1] == ["torchrun"] and "--" in words:
                    out.append((line + offset + 1, words[words.index("--") + 1:]))
    return out


def test_interp_command_lines_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from interp.cli import parse

    lines = _interp_lines()
    assert len(lines) >= 6
    monkeypatch.chdir(tmp_path)
    for folder in ("runs/tv", "runs/demo", "runs/lens"):
        (tmp_path / folder).mkdir(parents=True)
    for line, argv in lines:
        if "cuda" in " ".join(argv) and not torch.cuda.is_available():
            continue
        if argv[:1] == ["make"]:
            continue
        try:
            parse(argv)
        except Exception as error:  # noqa: BLE001 - name the line
            raise AssertionError(f"README.md:{line}: `interp {' '.join(argv)}` does not parse: {error}") from error
