"""config_options: one --option per config field, with its meaning, what it takes and its real default."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from interp.cli.options import config_options, integer


@dataclass
class _Config:
    steps: int = 5
    tasks: tuple[str, ...] = field(default_factory=lambda: ("segmentation", "lowlight"))
    lr: float = field(default=0.1, metadata={"help": "step size"})


def test_meanings_defaults_and_subsets() -> None:
    parser = argparse.ArgumentParser()
    config_options(parser, _Config, {"steps": integer(1)}, helps={"steps": "optimisation steps"})
    actions = {a.dest: a for a in parser._actions}
    assert actions["steps"].help == "optimisation steps: an integer >= 1 (default: 5)"
    assert actions["lr"].help.startswith("step size: ")  # from the field's metadata
    assert actions["tasks"].default == ("segmentation", "lowlight")  # a default_factory's value, not None
    assert "(default: segmentation,lowlight)" in actions["tasks"].help
    only = argparse.ArgumentParser()
    config_options(only, _Config, {}, only=("lr",))
    assert {a.dest for a in only._actions} == {"help", "lr"}
