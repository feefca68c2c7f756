"""The two training loops of the tiny model (VQGAN, then MAE on its frozen codes), their
atomic checkpoints and the CSV loss log; :func:`train_tiny` runs both into a run directory."""

from __future__ import annotations

import csv
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from interp.canvas import CanvasGrid, custom_layout, denormalize, one_shot
from interp.data.source import derive_seed
from interp.io import atomic_write, write_csv
from interp.metrics import masked_code_cross_entropy
from interp.models import presets
from interp.models.mae_vqgan import MAEVQGAN
from interp.models.vqgan import VQGAN
from interp.run import RunDir
from interp.train.config import TrainConfig
from interp.train.stream import CanvasStream, StepCanvases


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
