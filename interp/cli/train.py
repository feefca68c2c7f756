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


#: what each :class:`~interp.train.TrainConfig` field does (one line of --help each)
TRAIN_HELP: dict[str, str] = {
    "seed": "seed of the weights and of the synthetic prompts drawn",
    "vqgan_steps": "training steps of the VQGAN tokenizer (stage 1)",
    "vqgan_batch": "images per VQGAN step",
    "vqgan_lr": "VQGAN learning rate",
    "restart_every": "VQGAN steps between restarts of dead codebook entries",
    "mae_steps": "training steps of the MAE on prompts (stage 2)",
    "prompt_pairs": "(query, support) pairs per MAE step; each gives one canvas of every task",
    "focus_tasks": "tasks given extra pairs per step (the hardest to learn)",
    "focus_pairs": "extra pairs per step for each focus task",
    "contrast_tasks": "tasks also shown as contrast prompts (the pair kept and inverted), so the query alone does not give the task away",
    "contrast_pairs": "pairs per step for each contrast task",
    "random_batch": "random-masking canvases per step (half prompts, half plain images)",
    "mask_ratio": "share of patches masked in the random-masking canvases",
    "mae_lr": "MAE peak learning rate (AdamW)",
    "weight_decay": "MAE AdamW weight decay",
    "warmup": "MAE learning-rate warm-up steps",
    "checkpoint_every": "steps between resumable checkpoints",
    "threads": "torch CPU threads",
    "device": "where the model trains (data is drawn on the CPU)",
    "workers": "data-loader processes drawing the next steps' canvases (0: in the main process)",
    "decoder_depth": "MAE decoder blocks",
    "decoder_embed_dim": "MAE decoder width",
}
EXAMPLE = """  interp train-tiny --out runs/train-tiny                          # ~80 min on 2 CPU cores
  interp train-tiny --out runs/quick --vqgan-steps 20 --mae-steps 40  # a quick look: 20 + 40 steps, not 400 + 3600"""


def _options(parser: argparse.ArgumentParser) -> None:
    from interp.train import TrainConfig

    parser.add_argument("--out", type=run_dir, default="runs/train-tiny",
                        help="run directory (resumes if it holds checkpoints; default: runs/train-tiny)")
    config_options(parser, TrainConfig, TRAIN_KINDS, helps=TRAIN_HELP)


def _run(args: argparse.Namespace) -> int:
    from interp.train import TrainConfig, train_tiny

    train_tiny(args.out, config_from(TrainConfig, args), command=" ".join(sys.argv))
    print(f"weights written to {args.out}/tiny.safetensors")
    return 0


COMMANDS = [Command("train-tiny", "train the bundled tiny MAE-VQGAN on synthetic prompts (resumable)", _options, _run, EXAMPLE)]
