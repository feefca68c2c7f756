# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A tour of the hook points of MAE-VQGAN
#
# MAE-VQGAN answers a *visual prompt*: a 2x2 canvas holding an example input and output on top,
# a query bottom-left, and a hidden target bottom-right that the model paints. `interp` gives
# every activation of the model a TransformerLens-style name, so it can be read and edited.
#
# This notebook shows, on the bundled **tiny** model (the same architecture, much smaller:
# `model.config.mae` below gives its sizes):
#
# 1. the hook names, and how prompt layouts (one-shot, zero-shot) address tokens by canvas slot;
# 2. `run_with_cache` with a names filter, and `cache.stack_heads` for per-head outputs;
# 3. `run_with_hooks`: zeroing one attention head and seeing the prediction change;
# 4. the same read and write through `nnsight`;
# 5. an attention pattern.
#
# Everything works the same on the official model (`interp.models.load_official`): only the
# sizes change (224 px, 24 + 8 blocks of 16 heads). It runs in well under a minute on a CPU.

# %%
import torch

import interp
from interp.data import SyntheticPascal, build_task_prompts
from interp.demo import HELD_OUT_SEED
from interp.viz.style import use_paper_style

use_paper_style()  # plotly figures in the paper style (fonts, colours) for ad-hoc px plots too
torch.manual_seed(0)
model = interp.load_model("tiny")
source = SyntheticPascal(seed=HELD_OUT_SEED)  # the synthetic Pascal-5i analogue, a seed the model never trained on

model.config.mae

# %% [markdown]
# ## Prompts
#
# `build_task_prompts` builds the same (query, support) pairs for several tasks; a canvas holds
# all four cells (the target too, for scoring: the model's layout hides it).

# %%
from interp.viz.prompts import prompt_grid

TASKS = ("segmentation", "lowlight", "colorization")
prompts = build_task_prompts(source, fold=0, n=4, grid=model.grid, tasks=TASKS)
batch = prompts["segmentation"]
print(batch.canvases.shape, "ImageNet-normalised canvases")
prompt_grid(prompts, index=0, title="one prompt per task").show()

# %% [markdown]
# ## Hook points
#
# Names follow TransformerLens, prefixed by the stack. One encoder block has these (the decoder's
# are the same under `decoder.blocks.{L}`), plus a few outside the blocks:

# %%
names = list(model.hook_dict)
print(len(names), "hook points in all")
[n for n in names if n.startswith("encoder.blocks.0.")] + [n for n in names if ".blocks." not in n]

# %% [markdown]
# ## Layouts and slots
#
# A *layout* says which canvas slots each stack sees (slot 0 is CLS, slot `1 + p` patch `p`).
# One-shot: the encoder sees every patch but the target's; zero-shot: only the query, and the
# decoder holds the bottom half. Statistics are kept by slot, so they move between layouts.

# %%
from interp.canvas import one_shot, zero_shot

for layout in (one_shot(model.grid), zero_shot(model.grid)):
    groups = {stack: {g: len(p) for g, p in layout.token_groups(stack).items()} for stack in ("encoder", "decoder")}
    print(f"{layout.name:9s}", groups)
print("zero-shot encoder slots:", zero_shot(model.grid).encoder_slots)

# %% [markdown]
# ## Caching activations
#
# `run_with_cache` records the hook points that pass `names_filter` (cache only what you need:
# the default is everything). `hook_z` is each head's output before `W_O`, `[batch, pos, head, d_head]`;
# `stack_heads` stacks a stack's layers.

# %%
logits, cache = model.run_with_cache(batch.canvases, "zero_shot", names_filter=lambda name: name.endswith("attn.hook_z"))
print("logits", tuple(logits.shape), "(batch, decoder patches, VQGAN codes)")
print(cache)
z_encoder = cache.stack_heads("encoder")  # [layer, batch, pos, head, d_head]
z_decoder = cache.stack_heads("decoder")
z_encoder.shape, z_decoder.shape

# %%
import plotly.express as px

norms = z_decoder.norm(dim=-1).mean(dim=(1, 2))  # [layer, head]: mean norm of each head's output
px.imshow(norms, labels=dict(x="head", y="decoder layer", color="mean |z|"), aspect="auto", height=260,
          title="size of each decoder head's output (zero-shot)").show()

# %% [markdown]
# ## Editing with `run_with_hooks`
#
# A hook is `fn(activation, hook)`; a returned tensor replaces the activation. Zero one decoder
# head at a time (one-shot prompts) and count how many predicted target codes change; then look
# at the prediction of the head that matters most.

# %%
cfg = model.config.mae
target = list(model.grid.quadrant_patches("target"))  # one-shot decoder positions 1.. are the patches


def zero_head(head):
    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = 0
        return z
    return hook


with torch.no_grad():
    clean_codes = model(batch.canvases, "one_shot").argmax(-1)[:, target]
    changed = torch.zeros(cfg.decoder_depth, cfg.decoder_num_heads)
    for layer in range(cfg.decoder_depth):
        for head in range(cfg.decoder_num_heads):
            logits = model.run_with_hooks(batch.canvases, "one_shot",
                                          fwd_hooks=[(f"decoder.blocks.{layer}.attn.hook_z", zero_head(head))])
            changed[layer, head] = (logits.argmax(-1)[:, target] != clean_codes).float().mean()

LAYER, HEAD = divmod(int(changed.argmax()), cfg.decoder_num_heads)
print(f"zeroing decoder layer {LAYER} head {HEAD} changes {changed.max():.0%} of the target codes")
px.imshow(changed, labels=dict(x="head", y="decoder layer", color="codes changed"), aspect="auto", height=260,
          zmin=0, title="share of target codes that change when one decoder head is zeroed (one-shot)").show()

# %%
clean = model.predict_canvas(batch.canvases, "one_shot")  # [B, 3, H, W] in [0, 1]
with model.hooks([(f"decoder.blocks.{LAYER}.attn.hook_z", zero_head(HEAD))]):  # removed when the block ends
    ablated = model.predict_canvas(batch.canvases, "one_shot")

fig = prompt_grid([batch, batch], index=1, predictions=[clean, ablated], predictions_normalized=False,
                  title=f"one-shot prediction, clean (top) and with decoder L{LAYER} head {HEAD} zeroed (bottom)")
row_names = iter(["clean", f"L{LAYER}.H{HEAD} zeroed"])
fig.for_each_annotation(lambda a: a.update(text=next(row_names)) if a.text.startswith(batch.task) else None)
fig.show()

# %% [markdown]
# ## The same through nnsight
#
# `NNsight(model)` sees the hook points as modules: read `.output`, assign to it, in the order
# the forward runs them (encoder before decoder, lower layers first).

# %%
from nnsight import NNsight

traced = NNsight(model)
canvas = batch.canvases[:1]
with torch.no_grad(), traced.trace(canvas, "one_shot"):
    z_read = traced.encoder.blocks[1].attn.hook_z.output.save()          # read
    traced.decoder.blocks[LAYER].attn.hook_z.output[:, :, HEAD] = 0       # write, in place
    logits_nnsight = traced.output.save()

with torch.no_grad():
    _, cache = model.run_with_cache(canvas, "one_shot", names_filter="encoder.blocks.1.attn.hook_z")
    logits_hooks = model.run_with_hooks(canvas, "one_shot", fwd_hooks=[(f"decoder.blocks.{LAYER}.attn.hook_z", zero_head(HEAD))])
print("read  matches run_with_cache:", torch.allclose(z_read, cache["encoder.blocks.1.attn.hook_z"]))
print("write matches run_with_hooks:", torch.allclose(logits_nnsight, logits_hooks, atol=1e-5))

# %% [markdown]
# ## Attention patterns
#
# The pattern (`hook_pattern`, `[batch, head, query, key]`) is only computed when something
# hooks it (otherwise attention runs fused). Through nnsight, which does not use PyTorch hooks,
# switch it on with `model.enable_all_hook_points()` first.

# %%
model.enable_all_hook_points()
with torch.no_grad(), traced.trace(canvas, "zero_shot"):
    pattern = traced.decoder.blocks[LAYER].attn.hook_pattern.output.save()
model.enable_all_hook_points(False)

layout = zero_shot(model.grid)
labels = ["CLS" if s == 0 else f"{model.grid.slot_quadrant[s][0]}{s - 1}" for s in layout.decoder_slots]
heads = [HEAD, (HEAD + 1) % cfg.decoder_num_heads]
fig = px.imshow(pattern[0, heads].numpy(), facet_col=0, x=labels, y=labels, color_continuous_scale="Blues",
                labels=dict(x="key", y="query", color="attention"), height=420,
                title=f"zero-shot attention of decoder layer {LAYER} (q = query cell, t = target cell)")
fig.for_each_annotation(lambda a: a.update(text=f"head {heads[int(a.text.split('=')[-1])]}"))
fig.show()

# %%
from interp.viz.heatmaps import GROUP_LABELS

groups = layout.token_groups("decoder")
share = {g: pattern[0][:, list(groups["target"])][:, :, list(pos)].sum(-1).mean(-1) for g, pos in groups.items()}
fig = px.bar(x=list(range(cfg.decoder_num_heads)) * len(share), y=torch.cat(list(share.values())).numpy(),
             color=sum(([GROUP_LABELS.get(g, g)] * cfg.decoder_num_heads for g in share), []), barmode="stack", height=300,
             labels=dict(x="head", y="attention", color="key group"),
             title=f"where the target tokens look, decoder layer {LAYER} (zero-shot)")
fig.show()
