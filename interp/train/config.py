"""Settings of ``interp train-tiny`` (every field is a command-line option)."""

from __future__ import annotations

from dataclasses import dataclass, field

from interp.data.registry import selection


@dataclass
class TrainConfig:
    """Both training stages: sizes, schedules, the prompt mix, and where it runs."""

    seed: int = 0
    vqgan_steps: int = 400
    vqgan_batch: int = 32
    vqgan_lr: float = 5e-4
    restart_every: int = 25  # VQGAN steps between dead-code restarts (and at step 0: codebook init)
    mae_steps: int = 3600
    prompt_pairs: int = 8  # pairs per step; each gives one canvas of every task (7x)
    focus_tasks: tuple[str, ...] = field(default_factory=lambda: selection("train_focus"))  # the hardest to learn
    focus_pairs: int = 4  # extra pairs per step for each focus task
    contrast_tasks: tuple[str, ...] = field(default_factory=lambda: selection("train_contrast"))  # see CanvasStream.contrast_prompts
    contrast_pairs: int = 3  # pairs per step for each contrast task, as "keep" and as "invert" prompts
    random_batch: int = 24  # random-masking canvases per step (half prompts, half plain images)
    mask_ratio: float = 0.75
    mae_lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 200
    checkpoint_every: int = 100
    threads: int = 2
    device: str = "cpu"  # "cuda" trains on a GPU (data is still drawn on the CPU)
    workers: int = 0  # data-loader processes drawing the next steps' canvases (0: in the main process)
    decoder_depth: int = 3
    decoder_embed_dim: int = 96
