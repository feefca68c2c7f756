"""``interp`` itself (interp/cli/__init__.py): suggestions for mistakes, no empty run left behind, output once under torchrun."""

from __future__ import annotations

from pathlib import Path

import pytest

from interp import cli
from tests.conftest import random_model
from tests.viz.test_figures import make_run


def _error(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    return captured.err.strip()


def test_a_misspelt_command_gets_a_suggestion(capsys) -> None:
    assert cli.main(["colect", "--run", "x"]) == 2
    err = _error(capsys)
    assert "unknown command 'colect'" in err and "Did you mean `interp collect`?" in err and "`interp --help`" in err
    assert "`interp colect --help`" not in err  # no pointer to a command that does not exist
    assert cli.main(["zzzz"]) == 2
    assert "Did you mean" not in _error(capsys)


def test_a_misspelt_name_gets_a_suggestion(capsys) -> None:
    assert cli.main(["collect", "--tasks", "segmentation,lowlite"]) == 2
    assert "unknown 'lowlite' (did you mean 'lowlight'?)" in _error(capsys)


def test_space_separated_values_get_the_comma_hint(capsys) -> None:
    assert cli.main(["collect", "--tasks", "segmentation", "lowlight", "inpainting"]) == 2
    err = _error(capsys)
    assert "unrecognized arguments: lowlight inpainting" in err
    assert "--tasks takes one comma-separated value: --tasks segmentation,lowlight,inpainting" in err


def test_a_stage_run_too_early_leaves_no_run_directory(tmp_path: Path, capsys) -> None:
    run = tmp_path / "early"
    assert cli.main(["search", "--run", str(run), "--tasks", "lowlight"]) == 2
    assert "interp collect" in _error(capsys) and not run.exists()
    kept = tmp_path / "mine"  # a folder that was there before is the user's: left as it is
    kept.mkdir()
    assert cli.main(["search", "--run", str(kept), "--tasks", "lowlight"]) == 2
    capsys.readouterr()
    assert kept.is_dir()


def test_only_rank_0_prints_and_errors_name_their_rank(tmp_path: Path, capsys, monkeypatch) -> None:
    run = make_run(tmp_path, random_model(0))
    monkeypatch.setenv("RANK", "1")
    assert cli.main(["figures", str(run), "--formats", "html", "--only", "results"]) == 0
    assert capsys.readouterr().out == ""  # the other ranks say nothing: rank 0 prints "written to" once
    assert cli.main(["figures", str(tmp_path), "--formats", "html"]) == 1  # a failure: said by the rank it happens on
    assert _error(capsys).startswith("interp figures (rank 1): error: ")
    assert cli.main(["search", "--run", str(tmp_path / "early"), "--tasks", "lowlight"]) == 2  # every rank's input error
    assert capsys.readouterr().err == ""  # rank 0 says it, once
    monkeypatch.setenv("RANK", "0")
    assert cli.main(["figures", str(run), "--formats", "html", "--only", "results"]) == 0
    out = capsys.readouterr().out
    assert out.count("written to") == 1


def test_every_command_has_an_example_that_parses(tmp_path: Path, monkeypatch) -> None:
    """Each --help ends with example command lines; each of them parses as written."""
    import shlex

    monkeypatch.chdir(tmp_path)
    for folder in ("runs/tv", "runs/demo"):
        (tmp_path / folder).mkdir(parents=True)
    for name, command in cli.commands().items():
        assert command.example, f"interp {name} has no example"
        lines = [shlex.split(line, comments=True) for line in command.example.splitlines()]
        assert any(words[:2] == ["interp", name] for words in lines), command.example
        for words in lines:
            assert words[:1] == ["interp"], words
            for word in words:  # files an example names (a policy to import) exist here
                if word.endswith((".pkl", ".pth", ".ckpt")):
                    (tmp_path / word).touch()
            cli.parse(words[1:])


def test_each_stage_lists_only_the_options_it_reads(capsys) -> None:
    def shown(command: str) -> str:
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        return capsys.readouterr().out

    taskness = shown("taskness")
    listed = taskness[: taskness.index("example:")]
    assert "--tasks" in listed and "--n-collect" not in listed and "--n-eval" not in listed
    assert "also accepted, unused here" in taskness and "--n-collect" in taskness  # still accepted, and said so
    collect = shown("collect")
    listed = collect[: collect.index("example:")]
    assert "--n-collect" in listed and "--n-eval" not in listed and "--granularity" not in listed
    assert "prompts whose one-shot activations are averaged" in " ".join(listed.split())  # a line of meaning
    assert cli.parse(["taskness", "--n-collect", "16"]).n_collect == 16  # one option line serves every stage
