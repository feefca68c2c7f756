"""``interp train-tiny``: train the bundled tiny MAE-VQGAN (resumable)."""

from __future__ import annotations

import argparse
import sys

from interp.cli.options import Command, Kind, config_options, config_from, device, integer, names, real, run_dir
from interp.data.registry import TASKS, selection

#: checks of the :class:`~interp.train.TrainConfig` fields
TRAIN_KINDS: dict[str, Kind] = {
    "seed": integer(0),
    "vqgan_steps": integer(0),
    "vqgan_batch": integer(1),
    "vqgan_lr": real(0, above=True),
    "restart_every": integer(1),
    "mae_steps": integer(0),
    "prompt_pairs": integer(1),
    "focus_tasks": names(TASKS, allow_empty=True),
    "focus_pairs": integer(0),
    "contrast_tasks": names(selection("train_contrast"), allow_empty=True),
    "contrast_pairs": integer(0),
    "random_batch": integer(0),
    "mask_ratio": real(0, 1, above=True, below=True),
    "mae_lr": real(0, above=True),
    "weight_decay": real(0),
    "warmup": integer(0),
    "checkpoint_every": integer(1),
    "threads": integer(1),
    "device": Kind(device, "cpu | cuda | cuda:N | mps"),
    "workers": integer(0),
    "decoder_depth": integer(1),
    "decoder_embed_dim": integer(1),
}


def _options(parser: argparse.ArgumentParser) -> None:
    from interp.train import TrainConfig

    parser.add_argument("--out", type=run_dir, default="runs/train-tiny", help="run directory (resumes if it holds checkpoints)")
    config_options(parser, TrainConfig, TRAIN_KINDS)


def _run(args: argparse.Namespace) -> int:
    from interp.train import TrainConfig, train_tiny

    train_tiny(args.out, config_from(TrainConfig, args), command=" ".join(sys.argv))
    print(f"weights written to {args.out}/tiny.safetensors")
    return 0


COMMANDS = [Command("train-tiny", "train the bundled tiny MAE-VQGAN on synthetic prompts (resumable)", _options, _run)]
