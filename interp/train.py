"""Train the bundled tiny MAE-VQGAN on synthetic visual prompts (``interp train-tiny``).

Two stages, each the project's own model class with a small config (:func:`interp.models.presets.tiny`):

1. **VQGAN tokenizer** on canvases of every task: L1 + MSE reconstruction plus the VQ-VAE
   codebook and commitment terms; codes unused for a while are restarted at random encoder
   outputs so the whole codebook stays in use.
2. **MAE** with the tokenizer frozen: cross-entropy on the VQGAN codes of hidden patches, as
   the official ``forward_loss``. Each step mixes the *visual-prompt* mask (target cell
   hidden, the one-shot layout) on prompts of all seven tasks with MAE *random masking* on
   prompts and plain images, so the model learns images and in-context tasks together.

Data is a pure function of (seed, step), so a run killed at any point resumes from its last
checkpoint (written atomically) to the same result. Progress bars and a CSV loss log go to the
run directory.
"""

from __future__ import annotations

import csv
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from interp.canvas import CanvasGrid, custom_layout, denormalize, normalize, one_shot
from interp.data.source import Entry, Pair, derive_seed
from interp.data.synthetic import HELD_OUT_SEED, SyntheticPascal
from interp.data.tasks import TASKS, Cells, PromptBatch, build_task_prompts
from interp.io import atomic_write, write_csv
from interp.metrics import masked_code_cross_entropy
from interp.models import presets
from interp.models.mae_vqgan import MAEVQGAN
from interp.models.vqgan import VQGAN
from interp.run import RunDir


@dataclass
class TrainConfig:
    seed: int = 0
    vqgan_steps: int = 400
    vqgan_batch: int = 32
    vqgan_lr: float = 5e-4
    restart_every: int = 25  # VQGAN steps between dead-code restarts (and at step 0: codebook init)
    mae_steps: int = 3600
    prompt_pairs: int = 8  # pairs per step; each gives one canvas of every task (7x)
    focus_tasks: tuple[str, ...] = ("segmentation", "segmentation_inpainting")  # the hardest to learn
    focus_pairs: int = 4  # extra pairs per step for each focus task
    contrast_tasks: tuple[str, ...] = ("lowlight", "colorization", "inpainting")  # see CanvasStream.contrast_prompts
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


class CanvasStream:
    """Training canvases as a pure function of the step: prompts of every task and plain images."""

    def __init__(self, grid: CanvasGrid, seed: int) -> None:
        self.grid = grid
        self.seed = seed
        self.source = SyntheticPascal(seed=derive_seed("train", seed), size_per_split={"trn": 20000, "val": 40})
        self._by_class: dict[int, dict[int, list[str]]] = {}  # fold -> class -> image names

    def pairs(self, fold: int, n: int, seed: int) -> list[Pair]:
        """``n`` random (query, support) pairs of one class each, from the fold's training images.

        Unlike :meth:`PromptSource.sample_pairs` (query ``i`` = split entry ``i``, as the official
        evaluation), queries are drawn at random too, so training sees every image as a query.
        """
        if fold not in self._by_class:
            by_class: dict[int, list[str]] = {}
            for entry in self.source.entries(fold, "trn"):
                by_class.setdefault(entry.class_id, []).append(entry.name)
            self._by_class[fold] = by_class
        by_class = self._by_class[fold]
        classes = sorted(by_class)
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            cls = classes[rng.randrange(len(classes))]
            query, support = rng.sample(by_class[cls], 2)
            out.append(Pair(Entry(query, cls), Entry(support, cls)))
        return out

    def task_batches(self, step: int, pairs: int, stage: str, tasks: tuple[str, ...] = TASKS) -> dict[str, PromptBatch]:
        """The step's prompts of each task over the same random pairs (fold ``step % 4``); ``stage``
        names the draw, so different stages of one step see different pairs."""
        seed = derive_seed(stage, self.seed, step)
        return build_task_prompts(
            self.source, fold=step % 4, n=pairs, grid=self.grid, seed=seed, split="trn", tasks=tasks,
            pairs=self.pairs(step % 4, pairs, seed),
        )

    def prompts(self, step: int, pairs: int, stage: str, tasks: tuple[str, ...] = TASKS) -> Tensor:
        """``[len(tasks) * pairs, 3, H, W]``: the same random pairs under each task (normalised canvases)."""
        batches = self.task_batches(step, pairs, stage, tasks)
        return torch.cat([batches[t].canvases for t in tasks])

    def contrast_prompts(self, step: int, pairs: int, tasks: tuple[str, ...]) -> Tensor:
        """``[2 * len(tasks) * pairs, 3, H, W]``: for each task, its pairs as "keep" prompts
        (output = input: degraded images stay degraded) and as "invert" prompts (output and input
        swapped: clean images get degraded).

        Their queries look like the task's queries (or its targets), so the query alone no longer
        tells the task: only the example pair does. Training-only; never evaluated.
        """
        batches = self.task_batches(step, pairs, "contrast", tasks)
        canvases = []
        for task in tasks:
            example_input, example_output, query, target = batches[task].cells
            canvases.append(Cells(example_input, example_input, query, query).canvas(self.grid))
            canvases.append(Cells(example_output, example_input, target, query).canvas(self.grid))
        return torch.cat(canvases)

    def plain(self, step: int, n: int, stage: str) -> Tensor:
        """``[n, 3, H, W]`` whole synthetic images (no grid), normalised."""
        g = torch.Generator().manual_seed(derive_seed(stage, "plain", self.seed, step))
        indices = torch.randint(0, self.source.num_images("trn"), (n,), generator=g).tolist()
        return normalize(self.source.plain_images("trn", indices, size=self.grid.canvas_size))


class StepCanvases(torch.utils.data.Dataset):
    """Item ``step`` is that step's training canvases (a pure function of the step), so a
    :class:`~torch.utils.data.DataLoader` can draw the next steps in worker processes."""

    def __init__(self, stream: CanvasStream, cfg: "TrainConfig", phase: str) -> None:
        self.stream, self.cfg, self.phase = stream, cfg, phase

    def __len__(self) -> int:
        return self.cfg.vqgan_steps if self.phase == "vqgan" else self.cfg.mae_steps

    def __getitem__(self, step: int) -> dict[str, Tensor]:
        cfg, stream, phase = self.cfg, self.stream, self.phase
        if phase == "vqgan":  # 3/4 prompts of every task, 1/4 plain images
            pairs = max(1, (cfg.vqgan_batch * 3 // 4) // len(TASKS))
            return {"canvases": torch.cat([stream.prompts(step, pairs, "vqgan"), stream.plain(step, cfg.vqgan_batch - pairs * len(TASKS), "vqgan")])}
        prompts = stream.prompts(step, cfg.prompt_pairs, phase)
        if cfg.focus_pairs:
            prompts = torch.cat([prompts, stream.prompts(step, cfg.focus_pairs, "focus-extra", cfg.focus_tasks)])
        if cfg.contrast_pairs:
            prompts = torch.cat([prompts, stream.contrast_prompts(step, cfg.contrast_pairs, cfg.contrast_tasks)])
        half = cfg.random_batch // 2
        g = torch.Generator().manual_seed(derive_seed("mae-mix", cfg.seed, step))
        mixed = torch.cat([prompts[torch.randperm(len(prompts), generator=g)[:half]], stream.plain(step, cfg.random_batch - half, phase)])
        return {"prompts": prompts, "mixed": mixed}

    def loader(self, start: int) -> torch.utils.data.DataLoader:
        """Steps ``start .. len - 1`` in order, drawn by ``cfg.workers`` processes ahead of use."""
        workers = self.cfg.workers
        return torch.utils.data.DataLoader(
            self, batch_size=None, sampler=range(start, len(self)), num_workers=workers,
            prefetch_factor=4 if workers else None, pin_memory=self.cfg.device.startswith("cuda"),
        )


# --------------------------------------------------------------------------------------------
# checkpoints and logs


def _save_checkpoint(path: Path, step: int, state: dict, optimizer: torch.optim.Optimizer, extra: dict | None = None) -> None:
    """Atomically write a resumable checkpoint (read back with ``weights_only=True``)."""
    with atomic_write(path) as tmp:
        torch.save({"step": step, "model": state, "optimizer": optimizer.state_dict(), **(extra or {})}, tmp)


def _load_checkpoint(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


class LossLog:
    """Append-only CSV of (stage, step, metrics...), truncated to the resumed step."""

    def __init__(self, path: Path, start_step: int, stage: str) -> None:
        self.path = path
        rows = []
        if path.exists():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if r["stage"] != stage or int(r["step"]) < start_step]
        self.rows = rows

    def append(self, **row) -> None:
        self.rows.append({k: (f"{v:.3f}" if k == "time" else f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        if len(self.rows) % 10 == 0:
            self.flush()

    def flush(self) -> None:
        write_csv(self.rows, self.path)


# --------------------------------------------------------------------------------------------
# stage 1: VQGAN


def train_vqgan(vqgan: VQGAN, cfg: TrainConfig, stream: CanvasStream, run: RunDir) -> VQGAN:
    ckpt_path = run.file("checkpoints/vqgan.pt")
    optimizer = torch.optim.Adam(vqgan.parameters(), lr=cfg.vqgan_lr, betas=(0.5, 0.9))
    usage = torch.zeros(vqgan.config.n_embed)
    start = 0
    if (ckpt := _load_checkpoint(ckpt_path)) is not None:
        vqgan.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        usage, start = ckpt["usage"], ckpt["step"]
    log = LossLog(run.file("loss_log.csv"), start, "vqgan")
    vqgan.train().to(memory_format=torch.channels_last)  # faster convs on CPU
    batches = StepCanvases(stream, cfg, "vqgan").loader(start)
    bar = tqdm(zip(range(start, cfg.vqgan_steps), batches), desc="VQGAN", initial=start, total=cfg.vqgan_steps)
    for step, batch in bar:
        lr = cfg.vqgan_lr * min(1.0, (step + 1) / cfg.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = (denormalize(batch["canvases"].to(cfg.device, non_blocking=True)) * 2 - 1).contiguous(memory_format=torch.channels_last)
        if step == 0:  # start the codebook on encoder outputs instead of random vectors
            _restart_dead_codes(vqgan, x, usage, step)
        z_q, codes, (codebook, commitment) = vqgan.encode(x)
        recon = vqgan.decode(z_q)
        rec_loss = (recon - x).abs().mean() + F.mse_loss(recon, x)
        loss = rec_loss + codebook + 0.25 * commitment
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        usage = 0.9 * usage + torch.bincount(codes.flatten().cpu(), minlength=usage.numel()).float()
        if (step + 1) % cfg.restart_every == 0:
            _restart_dead_codes(vqgan, x, usage, step)
        used = int((usage > 0.5).sum())
        log.append(stage="vqgan", step=step, loss=loss.item(), recon=rec_loss.item(), codes_used=used, lr=lr, time=time.time())
        bar.set_postfix(loss=f"{loss.item():.3f}", codes=used)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.vqgan_steps:
            log.flush()
            _save_checkpoint(ckpt_path, step + 1, vqgan.state_dict(), optimizer, {"usage": usage})
    log.flush()
    return vqgan.eval().to(memory_format=torch.contiguous_format)


@torch.no_grad()
def _restart_dead_codes(vqgan: VQGAN, x: Tensor, usage: Tensor, step: int) -> None:
    """Move codes used less than once lately onto random encoder outputs of this batch."""
    dead = (usage < 1.0).nonzero().flatten()
    if dead.numel() == 0:
        return
    z = vqgan.quant_conv(vqgan.encoder(x)).permute(0, 2, 3, 1).reshape(-1, vqgan.config.embed_dim)
    g = torch.Generator().manual_seed(step)
    pick = torch.randint(0, z.shape[0], (dead.numel(),), generator=g)
    noise = 0.01 * torch.randn(dead.numel(), z.shape[1], generator=g)
    vqgan.quantize.embedding.weight[dead.to(z.device)] = z[pick.to(z.device)] + noise.to(z.device)
    usage[dead] = 1.0


# --------------------------------------------------------------------------------------------
# stage 2: MAE


def _random_layout(grid: CanvasGrid, ratio: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    keep = max(1, round(grid.num_patches * (1 - ratio)))
    visible = torch.randperm(grid.num_patches, generator=g)[:keep].tolist()
    return custom_layout(grid, visible, name="random")


def train_mae(model: MAEVQGAN, cfg: TrainConfig, stream: CanvasStream, run: RunDir) -> MAEVQGAN:
    """The MAE on the frozen tokenizer's codes: AdamW, linear warm-up then a cosine schedule."""
    steps, peak_lr = cfg.mae_steps, cfg.mae_lr
    ckpt_path = run.file("checkpoints/mae.pt")
    params = [p for n, p in model.named_parameters() if not n.startswith("vqgan.") and p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=peak_lr, betas=(0.9, 0.95),
    )
    start = 0
    mae_keys = {k for k in model.state_dict() if not k.startswith("vqgan.")}
    if (ckpt := _load_checkpoint(ckpt_path)) is not None:
        model.load_state_dict({**model.state_dict(), **ckpt["model"]})
        optimizer.load_state_dict(ckpt["optimizer"])
        start = ckpt["step"]
    log = LossLog(run.file("loss_log.csv"), start, "mae")
    grid, prompt_layout = model.grid, one_shot(model.grid)
    model.train()
    tokenizer = model.vqgan.eval().requires_grad_(False).to(memory_format=torch.channels_last)  # faster convs
    batches = StepCanvases(stream, cfg, "mae").loader(start)
    bar = tqdm(zip(range(start, steps), batches), desc="MAE", initial=start, total=steps)
    for step, batch in bar:
        lr = peak_lr * min((step + 1) / cfg.warmup, 0.5 * (1 + math.cos(math.pi * step / steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        prompts, mixed = (batch[k].to(cfg.device, non_blocking=True) for k in ("prompts", "mixed"))
        layout = _random_layout(grid, cfg.mask_ratio, derive_seed("mae-mask", cfg.seed, step))
        with torch.no_grad():
            codes = tokenizer.encode_to_codes(torch.cat([prompts, mixed]).contiguous(memory_format=torch.channels_last))
        prompt_codes, mixed_codes = codes.split([len(prompts), len(mixed)])
        prompt_loss = masked_code_cross_entropy(model(prompts, prompt_layout), prompt_codes, prompt_layout)
        random_loss = masked_code_cross_entropy(model(mixed, layout), mixed_codes, layout)
        loss = prompt_loss + 0.5 * random_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        log.append(stage="mae", step=step, loss=loss.item(), prompt_ce=prompt_loss.item(), random_ce=random_loss.item(), lr=lr, time=time.time())
        bar.set_postfix(prompt_ce=f"{prompt_loss.item():.3f}", random_ce=f"{random_loss.item():.3f}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == steps:
            log.flush()
            state = {k: v for k, v in model.state_dict().items() if k in mae_keys}
            _save_checkpoint(ckpt_path, step + 1, state, optimizer)
    log.flush()
    tokenizer.to(memory_format=torch.contiguous_format)
    return model.eval()


def train_tiny(out: str | Path, cfg: TrainConfig = TrainConfig(), command: str = "interp train-tiny") -> MAEVQGAN:
    """Train both stages into run directory ``out`` (resuming if it holds checkpoints)."""
    torch.set_num_threads(cfg.threads)
    if cfg.device.startswith("cuda"):
        torch.set_float32_matmul_precision("high")  # TF32 matmuls
    model_config = presets.tiny(cfg.decoder_depth, cfg.decoder_embed_dim)
    run = RunDir.create(out, command=command, config={"train": asdict(cfg), "model": model_config.to_dict()})
    model = presets.initialized(model_config, cfg.seed).to(cfg.device)
    stream = CanvasStream(model.grid, cfg.seed)
    started = time.time()
    train_vqgan(model.vqgan, cfg, stream, run)
    train_mae(model, cfg, stream, run)
    from interp.models.checkpoint import save_model

    model.cpu()
    save_model(model, run.file("tiny.safetensors"), metadata={"train_config": str(asdict(cfg))})
    run.update_manifest(train_seconds_this_session=round(time.time() - started, 1))
    return model


# --------------------------------------------------------------------------------------------
# evaluation and the model card


def evaluate_in_context(model: MAEVQGAN, n_per_fold: int = 32, seed: int = 0):
    """One-shot vs zero-shot on held-out synthetic prompts (val split, a seed unused in
    training), every task, all four folds pooled; returns the comparison table."""
    import pandas as pd

    from interp.taskvectors.evaluate import relative_gain, score_prompts, summarize

    source = SyntheticPascal(seed=HELD_OUT_SEED)
    per_fold = [build_task_prompts(source, fold, n_per_fold, model.grid, seed=seed, split="val") for fold in range(4)]
    rows = []
    for task in TASKS:
        for layout in ("one_shot", "zero_shot"):
            scores = torch.cat([score_prompts(model, batches[task], layout) for batches in per_fold])
            rows.append(summarize(task, layout, scores))
    table = pd.DataFrame(rows)
    gains = relative_gain(table)
    table["gain_vs_zero_shot"] = table["task"].map(gains).where(table["condition"] == "one_shot")
    return table


def write_model_card(path: Path, model: MAEVQGAN, cfg: TrainConfig, table, wall_clock_s: float, notes: str = "") -> None:
    """Markdown model card: config, data, schedule, seed, wall-clock, hardware, measured metrics."""
    import json
    import platform

    n_mae = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("vqgan."))
    n_vq = sum(p.numel() for p in model.vqgan.parameters())
    wide = table.pivot(index="task", columns="condition", values="mean").reindex(list(TASKS))
    gain = table.dropna(subset=["gain_vs_zero_shot"]).set_index("task")["gain_vs_zero_shot"]
    metric = table.groupby("task")["metric"].first()
    lines = [
        "| task | metric | one-shot | zero-shot | one-shot gain |",
        "|---|---|---|---|---|",
        *(f"| {t} | {metric[t]} ({'higher' if metric[t] == 'iou' else 'lower'} is better) | "
          f"{wide.loc[t, 'one_shot']:.4f} | {wide.loc[t, 'zero_shot']:.4f} | {gain[t]:+.0%} |" for t in TASKS),
    ]
    contrast = (
        f" + {cfg.contrast_pairs} pairs x {', '.join(cfg.contrast_tasks)}\n  as contrast prompts (below)"
        if cfg.contrast_pairs else ""
    )
    contrast_note = (
        "\n- Contrast prompts (training only, never evaluated): the pairs of a task once *kept* (output =\n"
        "  the degraded input) and once *inverted* (clean input, degraded output), so that the query alone\n"
        "  no longer tells the task: only the example pair does."
        if cfg.contrast_pairs else ""
    )
    text = f"""# Tiny MAE-VQGAN (bundled with interp)

A small visual-prompting model with the architecture of MAE-VQGAN (Bar et al. 2022), trained
by `interp train-tiny` on the project's synthetic Pascal-5i analogue. It exists so that every
test, demo and notebook runs offline on a laptop CPU, on a model that really does in-context
learning. Load it with `interp.load_model("tiny")`.

## Model
- Canvas 64x64, patches 8x8 (8x8 grid, 4x4 patches per cell, 31-px cells, padding 1).
- MAE: encoder {cfg_line(model, 'enc')}; decoder {cfg_line(model, 'dec')}; {n_mae / 1e6:.2f} M parameters.
- VQGAN (taming architecture, f8): {model.config.vqgan.n_embed} codes of dim {model.config.vqgan.embed_dim}, ch {model.config.vqgan.ch}, ch_mult {list(model.config.vqgan.ch_mult)}; {n_vq / 1e6:.2f} M parameters.
- Full config: `{json.dumps(model.config.to_dict())}`

## Training
- Data: `SyntheticPascal` (train split, seed derived from the run seed), canvases of all seven
  tasks plus plain images; never the held-out seed {_held_out_seed()}.
- Stage 1, VQGAN: {cfg.vqgan_steps} steps x {cfg.vqgan_batch} canvases, Adam lr {cfg.vqgan_lr}, L1 + MSE
  reconstruction + codebook + 0.25 commitment; dead codes restarted every {cfg.restart_every} steps.
- Stage 2, MAE (VQGAN frozen): {cfg.mae_steps} steps; each step {cfg.prompt_pairs} pairs x 7 tasks
  {f"+ {cfg.focus_pairs} more pairs x {', '.join(cfg.focus_tasks)} " if cfg.focus_pairs else ""}with the
  target cell hidden (one-shot layout){contrast} + {cfg.random_batch} canvases with {cfg.mask_ratio:.0%} random masking
  (half prompts, half plain images); cross-entropy on the hidden patches' codes; AdamW lr {cfg.mae_lr},
  cosine schedule, {cfg.warmup} warm-up steps, weight decay {cfg.weight_decay}.{contrast_note}
- Seed {cfg.seed}; wall-clock {wall_clock_s / 60:.1f} min on {cfg.threads} CPU threads
  ({platform.processor() or platform.machine()}, torch {torch.__version__}).
- Reproduce: `interp train-tiny --out runs/train-tiny` (resumable; `--device cuda --workers 8` on a GPU),
  then `python scripts/publish_tiny.py runs/train-tiny` (measures, writes this card, copies the weights).

## In-context learning (held-out prompts)
Synthetic val split, held-out seed {_held_out_seed()}, {int(table['n'].max())} prompts per task (4 folds pooled).
IoU / MSE on the target cell after VQGAN decoding; gain is relative to zero-shot.

{chr(10).join(lines)}
{notes}
"""
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def cfg_line(model: MAEVQGAN, stack: str) -> str:
    c = model.config.mae
    if stack == "enc":
        return f"{c.depth} blocks x {c.num_heads} heads, width {c.embed_dim}"
    return f"{c.decoder_depth} blocks x {c.decoder_num_heads} heads, width {c.decoder_embed_dim}"


def _held_out_seed() -> int:
    return HELD_OUT_SEED
