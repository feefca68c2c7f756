"""A second model through the :class:`~interp.models.PromptModel` protocol, end to end.

:class:`ToyPromptModel` is not an MAE-VQGAN: a 32-px canvas of 8-px patches, a linear patch
embedding, 3 encoder blocks of 2 heads (d_head 12) and 2 decoder blocks of 4 heads (d_head 4),
its own code head over 8 codes, and its own tokenizer (a patch's code is its mean colour,
one bit per channel; a code decodes to a flat patch of that colour). It has no ``config``,
no ``vqgan`` and no MAE attribute: the pipeline reaches it only through the protocol. On it
the test runs collect -> taskness -> search (REINFORCE and random, through ``run_search``)
-> evaluate -> figures, and checks what each step produced against the toy's own shapes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterator

import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from interp.canvas import CanvasGrid, PromptLayout, denormalize, get_layout
from interp.data.synthetic import SyntheticPascal
from interp.data.tasks import build_prompts, build_task_prompts
from interp.hooks import HookedModule, HookPoint
from interp.models.pixels import Decode, Decoder, predict_pixels
from interp.models.presets import random_model
from interp.models.protocol import PromptModel, StackInfo
from interp.models.vit import Block
from interp.provenance import weights_hash
from interp.run import RunDir
from interp.taskvectors.collect import collect
from interp.taskvectors.evaluate import evaluate_task_vectors
from interp.taskvectors.search import run_search
from interp.taskvectors.search.base import SearchProblem
from interp.taskvectors.search.random_sets import Config as RandomConfig
from interp.taskvectors.search.reinforce import Config as ReinforceConfig
from interp.taskvectors.taskness import taskness
from interp.taskvectors.units import UnitSpace
from interp.viz.figures import write_run_figures

TASKS = ("segmentation", "lowlight")


class ToyStack(nn.Module):
    """A stack of ViT blocks (its hook names ``<stack>.blocks.<i>...`` come from the tree)."""

    def __init__(self, d: int, layers: int, heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(d, heads, mlp_ratio=2.0) for _ in range(layers))
        self.norm = nn.LayerNorm(d)


class ToyPromptModel(HookedModule):
    """A small visual-prompting model with its own code head and tokenizer (see module doc)."""

    def __init__(self, grid: CanvasGrid = CanvasGrid(32, 8), d_enc: int = 24, d_dec: int = 16) -> None:
        super().__init__()
        self.grid = grid
        p, n = grid.patch_size, grid.num_slots
        self.patch = nn.Linear(3 * p * p, d_enc)
        self.enc_pos = nn.Parameter(torch.randn(1, n, d_enc) * 0.1)
        self.cls = nn.Parameter(torch.randn(1, 1, d_enc) * 0.1)
        self.encoder = ToyStack(d_enc, layers=3, heads=2)
        self.bridge = nn.Linear(d_enc, d_dec)
        self.mask_token = nn.Parameter(torch.randn(1, 1, d_dec) * 0.1)
        self.dec_pos = nn.Parameter(torch.randn(1, n, d_dec) * 0.1)
        self.decoder = ToyStack(d_dec, layers=2, heads=4)
        self.code_head = nn.Linear(d_dec, 8)
        self.hook_codes = HookPoint()
        self.setup_hooks()

    # --- the protocol -------------------------------------------------------------------
    @property
    def stacks(self) -> dict[str, StackInfo]:
        return {name: StackInfo(len(s.blocks), s.blocks[0].attn.n_heads, s.norm.normalized_shape[0] // s.blocks[0].attn.n_heads)
                for name, s in (("encoder", self.encoder), ("decoder", self.decoder))}

    @property
    def device(self) -> torch.device:
        return self.cls.device

    @property
    def dtype(self) -> torch.dtype:
        return self.cls.dtype

    @property
    def has_pixels(self) -> bool:
        return True

    def layout(self, layout: PromptLayout | str) -> PromptLayout:
        return get_layout(layout, self.grid)

    def config_hash(self) -> str:
        shape = {"grid": [self.grid.canvas_size, self.grid.patch_size], "stacks": {k: list(vars(v).values()) for k, v in self.stacks.items()}}
        return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]

    def fingerprint(self) -> dict[str, str]:
        return {"config": self.config_hash(), "weights": weights_hash(self)}

    def target_codes(self, canvases: Tensor) -> Tensor:
        colours = nn.functional.avg_pool2d(denormalize(canvases.float()).clamp(0, 1), self.grid.patch_size)  # [B, 3, n, n]
        bits = (colours > 0.5).long()
        return (bits[:, 0] * 4 + bits[:, 1] * 2 + bits[:, 2]).flatten(1)  # [B, num_patches]

    def decode_codes(self, codes: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        h, w = grid if grid is not None else (self.grid.patches_per_side,) * 2
        bits = torch.stack([(codes // 4) % 2, (codes // 2) % 2, codes % 2], dim=1).float()  # [B, 3, h*w]
        flat = (0.25 + 0.5 * bits).view(-1, 3, h, w)
        p = self.grid.patch_size
        return flat.repeat_interleave(p, -2).repeat_interleave(p, -1)

    def predict_pixels(self, canvases: Tensor, codes: Tensor, layout: PromptLayout, decode: Decode = "official",
                       decoder: Decoder | None = None) -> Tensor:
        return predict_pixels(self, canvases, codes, layout, decode, decoder or self.decode_codes)

    # --- forward ------------------------------------------------------------------------
    def _embed(self, canvas: Tensor, layout: PromptLayout) -> Tensor:
        p = self.grid.patch_size
        patches = canvas.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).flatten(1, 2).flatten(2)
        x = self.patch(patches.to(self.dtype)) + self.enc_pos[:, 1:]
        visible = x[:, list(layout.encoder_patches)]
        return torch.cat([(self.cls + self.enc_pos[:, :1]).expand(len(canvas), -1, -1), visible], dim=1)

    def _to_decoder(self, x: Tensor, layout: PromptLayout) -> Tensor:
        x = self.bridge(self.encoder.norm(x))
        tokens = self.mask_token.expand(len(x), len(layout.decoder_patches), -1).clone()
        at = [q - 1 for q in layout.positions("decoder", layout.encoder_slots[1:])]
        tokens[:, at] = x[:, 1:]
        return torch.cat([x[:, :1], tokens], dim=1) + self.dec_pos[:, list(layout.decoder_slots)]

    def _head(self, x: Tensor) -> Tensor:
        return self.hook_codes(self.code_head(self.decoder.norm(x))[:, 1:])

    def residual_stream(self, canvas: Tensor, layout: PromptLayout | str) -> Iterator[tuple[str, int, Tensor]]:
        layout = self.layout(layout)
        x = self._embed(canvas, layout)
        for i, block in enumerate(self.encoder.blocks):
            yield "encoder", i, x
            x = block(x)
        x = self._to_decoder(x, layout)
        for i, block in enumerate(self.decoder.blocks):
            yield "decoder", i, x
            x = block(x)

    def forward_from(self, resid: Tensor, layout: PromptLayout | str, stack: str, layer: int) -> Tensor:
        layout, x = self.layout(layout), resid
        if stack == "encoder":
            for block in self.encoder.blocks[layer:]:
                x = block(x)
            x, layer = self._to_decoder(x, layout), 0
        for block in self.decoder.blocks[layer:]:
            x = block(x)
        return self._head(x)

    def forward(self, canvas: Tensor, layout: PromptLayout | str = "one_shot") -> Tensor:
        return self.forward_from(self._embed(canvas, self.layout(layout)), layout, "encoder", 0)


@pytest.fixture(scope="module")
def toy() -> ToyPromptModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ToyPromptModel().eval()


def test_mae_vqgan_is_a_prompt_model() -> None:
    """MAE-VQGAN answers the protocol from its config; its fingerprint is the provenance record."""
    with torch.random.fork_rng(devices=[]):  # random_model seeds the global generator
        model = random_model(seed=1, with_vqgan=True)
    c = model.config.mae
    assert isinstance(model, PromptModel) and model.has_pixels
    assert model.stacks == {"encoder": StackInfo(c.depth, c.num_heads, c.embed_dim // c.num_heads),
                            "decoder": StackInfo(c.decoder_depth, c.decoder_num_heads, c.decoder_embed_dim // c.decoder_num_heads)}
    assert model.fingerprint() == {"config": model.config.fingerprint(), "weights": weights_hash(model)}
    assert model.device == torch.device("cpu") and model.layout("zero_shot") == get_layout("zero_shot", model.grid)
    canvas = torch.randn(1, 3, model.grid.canvas_size, model.grid.canvas_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        codes = model.target_codes(canvas)
        torch.testing.assert_close(model.decode_codes(codes), model.vqgan.decode_codes(codes))
    assert codes.shape == (1, model.grid.num_patches)


def test_toy_is_a_prompt_model_and_not_an_mae(toy) -> None:
    assert isinstance(toy, PromptModel)
    assert not hasattr(toy, "config") and not hasattr(toy, "vqgan")
    assert toy.stacks == {"encoder": StackInfo(3, 2, 12), "decoder": StackInfo(2, 4, 4)}
    canvas = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = toy(canvas, "zero_shot")
        stream = list(toy.residual_stream(canvas, "zero_shot"))
        # restarting from any block's clean input gives the whole forward's logits
        for stack, layer, resid in stream:
            torch.testing.assert_close(toy.forward_from(resid, "zero_shot", stack, layer), logits)
    assert logits.shape == (2, len(toy.layout("zero_shot").decoder_patches), 8)
    codes = toy.target_codes(canvas)
    assert codes.shape == (2, 16) and int(codes.max()) < 8
    assert toy.decode_codes(codes).shape == (2, 3, 32, 32)


def test_pipeline_end_to_end_on_the_toy(toy, tmp_path) -> None:
    source = SyntheticPascal(seed=5, size_per_split={"trn": 40, "val": 40})
    run = RunDir.create(tmp_path / "run", "test_protocol", {"model": "toy"})

    # collect: statistics shaped by the toy's own stacks
    stats = {}
    for task in TASKS:
        prompts = build_prompts(source, task, 0, 8, toy.grid, seed=0, split="trn")
        stats[task] = collect(toy, [prompts.canvases[:4], prompts.canvases[4:]], "one_shot", task=task, progress=False)
        assert stats[task].fingerprint == toy.config_hash() and stats[task].n_prompts == 8
        for stack, info in toy.stacks.items():
            for layer in range(info.layers):
                site = f"{stack}.blocks.{layer}.attn.hook_z"
                assert tuple(stats[task].sum[site].shape) == (toy.grid.num_slots, info.heads, info.d_head)

    # taskness over the toy's 3 x 2 + 2 x 4 heads
    table = taskness(list(stats.values()), by="group")
    run.write_table("taskness", table)
    heads = table.groupby("stack")["head"].nunique().to_dict()
    assert heads == {"encoder": 2, "decoder": 4}
    assert table.groupby("stack")["layer"].nunique().to_dict() == {"encoder": 3, "decoder": 2}

    # search: two methods on one SearchProblem each
    space = UnitSpace.for_model(toy, "head")
    assert len(space) == 3 * 2 + 2 * 4
    found = {}
    for task in TASKS:
        prompts = build_prompts(source, task, 0, 6, toy.grid, seed=1, split="trn")
        problem = SearchProblem(toy, space, stats[task], prompts.select(range(3)), prompts.select(range(3, 6)),
                                reward="token", select_reward="pixel")
        reinforce = run_search("reinforce", problem, ReinforceConfig(steps=4, samples=8, eval_every=2, seed=0), progress=False)
        random = run_search("random", problem, RandomConfig(draws=4, seed=0), progress=False)
        for result in (reinforce, random):
            assert result.mask.shape == (len(space),) and result.budget.forwards > 0
            assert torch.isfinite(torch.tensor(result.held_out_score))
        reinforce.to_policy(space, task).save(run.policy_path(task))
        random.to_policy(space, task).save(run.policy_path(task, method="random"))
        found[task] = reinforce.mask.float()

    # evaluate: one-shot / zero-shot / + task vector / + random units, with images
    held_out = build_task_prompts(source, 0, 4, toy.grid, seed=2, split="val", tasks=TASKS)
    examples: dict = {}
    results = evaluate_task_vectors(toy, space, stats, found, held_out, seed=0, sampled=1, controls=1,
                                    examples=examples, n_examples=2)
    run.write_table("results", results)
    assert set(results["task"]) == set(TASKS)
    assert {"one_shot", "zero_shot", "zero_shot+tv", "zero_shot+random"} <= set(results["condition"])
    assert results["mean"].notna().all()
    for task, images in examples.items():
        run.write_tensors(f"prompts/{task}", {"canvases": held_out[task].canvases[:2],
                                              **{f"prediction.{c}": im[:2].float() / 255 for c, im in images.items()}},
                          {"task": task})

    # figures from the run directory alone
    written = write_run_figures(run.path, formats=("html",))
    stems = {p.stem for p in written}
    assert {"results", "taskness", "prompts", *(f"reinforce_{t}" for t in TASKS)} <= stems, stems
    assert pd.read_csv(run.path / "results.csv")["task"].tolist() == results["task"].tolist()
    run.release()
