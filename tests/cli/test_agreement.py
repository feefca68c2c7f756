"""``interp agreement``: bad input is one line with its fix."""

from __future__ import annotations

from interp.cli import main


def test_agreement_names_missing_statistics_and_unknown_rewards(tmp_path, capsys) -> None:
    assert main(["agreement", "--run", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "no statistics" in err and "interp collect --run" in err and "Traceback" not in err
    assert main(["agreement", "--run", str(tmp_path / "run"), "--reward", "bogus"]) == 2
    assert "unknown 'bogus'; choose from pixel, token, soft" in capsys.readouterr().err
