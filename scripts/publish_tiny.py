"""Publish a trained tiny model: measure in-context learning, write the model card, copy the weights.

    python scripts/publish_tiny.py runs/train-tiny

Reads ``RUN/tiny.safetensors`` and ``RUN/loss_log.csv`` (written by ``interp train-tiny``),
evaluates one-shot vs zero-shot on held-out synthetic prompts, and writes
``interp/assets/tiny.safetensors`` and ``interp/assets/MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd

from interp.models.checkpoint import load_model
from interp.train import TrainConfig, evaluate_in_context, write_model_card

ASSETS = Path(__file__).resolve().parents[1] / "interp" / "assets"


def training_seconds(log: pd.DataFrame, gap: float = 120.0) -> float:
    """Wall-clock spent training: the log's time span without pauses longer than ``gap`` (resumes)."""
    steps = log["time"].astype(float).sort_values().diff().dropna()
    return float(steps[steps < gap].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--n-per-fold", type=int, default=32)
    parser.add_argument("--notes", default="")
    parser.add_argument("--wall-clock-min", type=float, default=None,
                        help="training wall-clock when the loss log cannot tell it (e.g. runs resumed by hand)")
    args = parser.parse_args()
    model = load_model(args.run / "tiny.safetensors")
    manifest = json.loads((args.run / "manifest.json").read_text())
    train = manifest["config"]["train"]
    cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in train.items()})
    table = evaluate_in_context(model, n_per_fold=args.n_per_fold)
    print(table.to_markdown(index=False, floatfmt=".4f"))
    seconds = args.wall_clock_min * 60 if args.wall_clock_min else training_seconds(pd.read_csv(args.run / "loss_log.csv"))
    ASSETS.mkdir(exist_ok=True)
    table.to_csv(ASSETS / "in_context_learning.csv", index=False)
    write_model_card(ASSETS / "MODEL_CARD.md", model, cfg, table, seconds, notes=args.notes)
    shutil.copyfile(args.run / "tiny.safetensors", ASSETS / "tiny.safetensors")
    print(f"published to {ASSETS} (training wall-clock {seconds / 60:.1f} min)")


if __name__ == "__main__":
    main()
