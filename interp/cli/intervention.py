"""The intervention options every command that patches shares: ``--intervention`` and ``--alpha``.

They build an :class:`~interp.taskvectors.patching.Intervention` (what a patch does to the units it
selects: ``replace`` by the task mean, the official; ``add`` the one-shot minus zero-shot mean
difference; ``scaled`` replace), which reaches every scoring path through the ``MeanPatcher``.
"""

from __future__ import annotations

import argparse

from interp.cli.options import real


def intervention_options(parser: argparse.ArgumentParser) -> None:
    """``--intervention`` and ``--alpha``: what a patch does to the units it selects."""
    from interp.taskvectors.patching import INTERVENTION_KINDS

    parser.add_argument("--intervention", choices=INTERVENTION_KINDS, default="replace",
                        help="replace: the task mean (official); add: z + alpha (mean - zero-shot mean); "
                             "scaled: z + alpha (mean - z) (default: replace)")
    parser.add_argument("--alpha", type=real(), default=1.0, help="alpha of add / scaled, a number (default: 1)")


def intervention_from(args: argparse.Namespace):
    """The :class:`~interp.taskvectors.patching.Intervention` of the parsed options."""
    from interp.taskvectors.patching import Intervention

    return Intervention(args.intervention, args.alpha)
