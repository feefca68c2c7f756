"""Write the tutorial notebooks of this folder from the cells below (no outputs).

The notebooks are generated so that they review as code: edit the cells here, then

    python notebooks/build_notebooks.py          # rewrites notebooks/0*.ipynb
    python notebooks/build_notebooks.py --check  # exit 1 if a notebook's cells differ from these (or hold outputs)

Each notebook runs top to bottom on the bundled tiny model in a minute or two on a laptop CPU
(``tests/test_notebooks.py`` executes them all in CI; ``tests/test_browser.py`` drives the
explorer of ``04_patch_explorer.ipynb`` in a real browser).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


SETUP = """
import torch

import interp
from interp.data import SyntheticPascal, build_task_prompts
from interp.demo import DEMO_PIPELINE, HELD_OUT_SEED
from interp.viz.style import use_paper_style

use_paper_style()  # plotly figures in the paper style (fonts, colours) for ad-hoc px plots too
torch.manual_seed(0)
model = interp.load_model("tiny")
source = SyntheticPascal(seed=HELD_OUT_SEED)  # the synthetic Pascal-5i analogue, a seed the model never trained on
"""

# --------------------------------------------------------------------------------------------
# 01: hooks and caching

HOOKS_TOUR = [
    md("""
# A tour of the hook points of MAE-VQGAN

MAE-VQGAN answers a *visual prompt*: a 2x2 canvas holding an example input and output on top,
a query bottom-left, and a hidden target bottom-right that the model paints. `interp` gives
every activation of the model a TransformerLens-style name, so it can be read and edited.

This notebook shows, on the bundled **tiny** model (the same architecture, much smaller:
`model.config.mae` below gives its sizes):

1. the hook names, and how prompt layouts (one-shot, zero-shot) address tokens by canvas slot;
2. `run_with_cache` with a names filter, and `cache.stack_heads` for per-head outputs;
3. `run_with_hooks`: zeroing one attention head and seeing the prediction change;
4. the same read and write through `nnsight`;
5. an attention pattern.

Everything works the same on the official model (`interp.models.load_official`): only the
sizes change (224 px, 24 + 8 blocks of 16 heads). It runs in well under a minute on a CPU.
"""),
    code(SETUP + """
model.config.mae
"""),
    md("""
## Prompts

`build_task_prompts` builds the same (query, support) pairs for several tasks; a canvas holds
all four cells (the target too, for scoring: the model's layout hides it).
"""),
    code("""
from interp.viz.prompts import prompt_grid

TASKS = ("segmentation", "lowlight", "colorization")
prompts = build_task_prompts(source, fold=0, n=4, grid=model.grid, tasks=TASKS)
batch = prompts["segmentation"]
print(batch.canvases.shape, "ImageNet-normalised canvases")
prompt_grid(prompts, index=0, title="one prompt per task").show()
"""),
    md("""
## Hook points

Names follow TransformerLens, prefixed by the stack. One encoder block has these (the decoder's
are the same under `decoder.blocks.{L}`), plus a few outside the blocks:
"""),
    code("""
names = list(model.hook_dict)
print(len(names), "hook points in all")
[n for n in names if n.startswith("encoder.blocks.0.")] + [n for n in names if ".blocks." not in n]
"""),
    md("""
## Layouts and slots

A *layout* says which canvas slots each stack sees (slot 0 is CLS, slot `1 + p` patch `p`).
One-shot: the encoder sees every patch but the target's; zero-shot: only the query, and the
decoder holds the bottom half. Statistics are kept by slot, so they move between layouts.
"""),
    code("""
from interp.canvas import one_shot, zero_shot

for layout in (one_shot(model.grid), zero_shot(model.grid)):
    groups = {stack: {g: len(p) for g, p in layout.token_groups(stack).items()} for stack in ("encoder", "decoder")}
    print(f"{layout.name:9s}", groups)
print("zero-shot encoder slots:", zero_shot(model.grid).encoder_slots)
"""),
    md("""
## Caching activations

`run_with_cache` records the hook points that pass `names_filter` (cache only what you need:
the default is everything). `hook_z` is each head's output before `W_O`, `[batch, pos, head, d_head]`;
`stack_heads` stacks a stack's layers.
"""),
    code("""
logits, cache = model.run_with_cache(batch.canvases, "zero_shot", names_filter=lambda name: name.endswith("attn.hook_z"))
print("logits", tuple(logits.shape), "(batch, decoder patches, VQGAN codes)")
print(cache)
z_encoder = cache.stack_heads("encoder")  # [layer, batch, pos, head, d_head]
z_decoder = cache.stack_heads("decoder")
z_encoder.shape, z_decoder.shape
"""),
    code("""
import plotly.express as px

norms = z_decoder.norm(dim=-1).mean(dim=(1, 2))  # [layer, head]: mean norm of each head's output
px.imshow(norms, labels=dict(x="head", y="decoder layer", color="mean |z|"), aspect="auto", height=260,
          title="size of each decoder head's output (zero-shot)").show()
"""),
    md("""
## Editing with `run_with_hooks`

A hook is `fn(activation, hook)`; a returned tensor replaces the activation. Zero one decoder
head at a time (one-shot prompts) and count how many predicted target codes change; then look
at the prediction of the head that matters most.
"""),
    code("""
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
"""),
    code("""
clean = model.predict_canvas(batch.canvases, "one_shot")  # [B, 3, H, W] in [0, 1]
with model.hooks([(f"decoder.blocks.{LAYER}.attn.hook_z", zero_head(HEAD))]):  # removed when the block ends
    ablated = model.predict_canvas(batch.canvases, "one_shot")

fig = prompt_grid([batch, batch], index=1, predictions=[clean, ablated], predictions_normalized=False,
                  title=f"one-shot prediction, clean (top) and with decoder L{LAYER} head {HEAD} zeroed (bottom)")
row_names = iter(["clean", f"L{LAYER}.H{HEAD} zeroed"])
fig.for_each_annotation(lambda a: a.update(text=next(row_names)) if a.text.startswith(batch.task) else None)
fig.show()
"""),
    md("""
## The same through nnsight

`NNsight(model)` sees the hook points as modules: read `.output`, assign to it, in the order
the forward runs them (encoder before decoder, lower layers first).
"""),
    code("""
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
"""),
    md("""
## Attention patterns

The pattern (`hook_pattern`, `[batch, head, query, key]`) is only computed when something
hooks it (otherwise attention runs fused). Through nnsight, which does not use PyTorch hooks,
switch it on with `model.enable_all_hook_points()` first.
"""),
    code("""
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
"""),
    code("""
groups = layout.token_groups("decoder")
share = {g: pattern[0][:, list(groups["target"])][:, :, list(pos)].sum(-1).mean(-1) for g, pos in groups.items()}
fig = px.bar(x=list(range(cfg.decoder_num_heads)) * len(share), y=torch.cat(list(share.values())).numpy(),
             color=sum(([g] * cfg.decoder_num_heads for g in share), []), barmode="stack", height=300,
             labels=dict(x="head", y="attention", color="key group"),
             title=f"where the target tokens look, decoder layer {LAYER} (zero-shot)")
fig.show()
"""),
]

# --------------------------------------------------------------------------------------------
# 02: taskness

TASKNESS = [
    md("""
# Where do task vectors sit? Taskness of every head

A *task vector* is a set of heads whose mean output, patched into a zero-shot forward, makes
the model do a task. Good candidates are heads whose output depends on the task but not on the
particular prompt. *Taskness* measures that per (layer, head, token group): the between-task
sum of squares of the head's output over the within-task one (BCSS / WCSS), over one-shot
prompts labelled by task.

Here: collect one-shot statistics of every head's `hook_z` for the demo's four tasks on 32
prompts each (the official pipeline keeps the 100 best of many scored pairs:
`interp.pipeline.select_prompts`), compute taskness, draw it over layers x heads, and check that
patching the top-taskness units helps zero-shot. About a minute on a CPU.
"""),
    code(SETUP + """
TASKS = DEMO_PIPELINE.tasks
N_COLLECT = 32
print(TASKS)
"""),
    md("""
## Collect per-task statistics

`collect` keeps running sums of `z` and `z**2` per slot in float64 (mergeable by addition,
saved as safetensors with a JSON sidecar).
"""),
    code("""
from interp.taskvectors.stats import collect

train = build_task_prompts(source, fold=0, n=N_COLLECT, grid=model.grid, seed=0, split="trn", tasks=TASKS)
stats = {task: collect(model, [batch.canvases], layout="one_shot", task=task, dataset=source.name, progress=False)
         for task, batch in train.items()}
stats["segmentation"]
"""),
    md("""
## Taskness

One row per (site, head, token group); high = task-specific and invariant within a task.
"""),
    code("""
from interp.taskvectors.taskness import taskness

table = taskness(stats, by="group")
table.sort_values("taskness", ascending=False).head(10)
"""),
    code("""
from interp.viz.heatmaps import layer_head_heatmap

layer_head_heatmap(table, "taskness", log=True,
                   title="taskness (log10 BCSS / WCSS) per head and token group, one-shot prompts").show()
"""),
    md("""
Pooled over all tokens of a head (`by="head"`), and summarised per stack and token group:
"""),
    code("""
layer_head_heatmap(taskness(stats, by="head"), "taskness", log=True, title="taskness per head (all tokens)").show()
"""),
    code("""
import plotly.express as px

summary = table.groupby(["stack", "group"], sort=False)["taskness"].median().reset_index()
px.bar(summary, x="group", y="taskness", color="stack", barmode="group", log_y=True, height=320,
       title="median taskness per stack and token group").show()
"""),
    md("""
## Do top-taskness units carry the task?

Patch the `k` units of highest taskness (a `group` unit = one head at one token group of the
zero-shot forward) with each task's mean, on held-out prompts, and compare with plain
zero-shot and one-shot. (IoU: higher is better; MSE: lower is better.)
"""),
    code("""
import pandas as pd

from interp.taskvectors.evaluate import patch_hooks_for, score_prompts, summarize
from interp.taskvectors.taskness import top_units
from interp.taskvectors.units import UnitSpace
from interp.viz.curves import results_bars

space = UnitSpace.for_model(model, "group")
held_out = build_task_prompts(source, fold=0, n=16, grid=model.grid, seed=2, split="val", tasks=TASKS)
rows = []
for task, batch in held_out.items():
    rows.append(summarize(task, "one_shot", score_prompts(model, batch, "one_shot")))
    rows.append(summarize(task, "zero_shot", score_prompts(model, batch, "zero_shot")))
    for k in (8, 32):
        hooks = patch_hooks_for(model, space, [(stats[task], top_units(table, space, k))], "zero_shot")
        rows.append(summarize(task, f"zero_shot+top{k}", score_prompts(model, batch, "zero_shot", hooks)))
results = pd.DataFrame(rows)
results_bars(results, title="zero-shot + the top-k taskness units, held-out prompts").show()
results.pivot(index="task", columns="condition", values="mean")[list(dict.fromkeys(results["condition"]))]
"""),
]

# --------------------------------------------------------------------------------------------
# 03: REINFORCE

REINFORCE = [
    md("""
# Searching for task vectors with REINFORCE

Taskness ranks candidates; REINFORCE (as in *Finding Visual Task Vectors*) searches for the set
of units that, patched with the task's mean activations, makes zero-shot forwards do the task.
One Bernoulli variable per unit; each step samples unit sets, scores them on training prompts,
and moves the policy towards the better ones.

The official run is 500 steps of 320 samples with the pixel reward (VQGAN-decoded IoU / MSE).
Here a short search: two tasks, 30 steps of 64 samples, and the **token** reward (minus the
cross-entropy of the target cell's VQGAN codes: no decoding, much cheaper). Then the learned
policies as heatmaps, and an evaluation on held-out prompts against zero-shot, one-shot and as
many random units. About two minutes on a CPU; `interp search` / `make demo` run the full thing.
"""),
    code(SETUP + """
from interp.taskvectors.reinforce import ReinforceConfig, TaskSearch, search
from interp.taskvectors.stats import collect
from interp.taskvectors.units import UnitSpace

TASKS = ("segmentation", "lowlight")
CONFIG = ReinforceConfig(steps=30, samples=64, eval_every=10, reward="token", seed=0)  # official: 500 x 320, pixel
space = UnitSpace.for_model(model, "group")  # one unit = one head at one token group of the zero-shot forward
space
"""),
    md("""
## Mean activations per task
"""),
    code("""
train = build_task_prompts(source, fold=0, n=32, grid=model.grid, seed=0, split="trn", tasks=TASKS)
stats = {task: collect(model, [batch.canvases], layout="one_shot", task=task, progress=False)
         for task, batch in train.items()}
"""),
    md("""
## Search

Ten training prompts and sixteen held-out ones per task (the held-out score, in pixel space,
picks the best policy every `eval_every` steps).
"""),
    code("""
from interp.data import build_prompts

states = {}
for task in TASKS:
    prompts = build_prompts(source, task, fold=0, n=10 + 16, grid=model.grid, seed=1, split="trn")
    job = {task: TaskSearch(stats[task], train=prompts.select(range(10)), held_out=prompts.select(range(10, len(prompts))))}
    states[task] = search(model, space, job, CONFIG, progress=False)
    print(f"{task:13s} best held-out score {states[task].best_score:.4f}")
probabilities = {task: torch.sigmoid(state.best_logits.float()) for task, state in states.items()}
"""),
    code("""
from interp.viz.curves import reinforce_curves

reinforce_curves({task: state.log for task, state in states.items()}, smooth=5,
                 title="REINFORCE: training loss, held-out score, expected units").show()
"""),
    md("""
## Where the policies put their units

`policy_frame` turns a policy into a (stack, layer, head, group) table that
`layer_head_heatmap` draws like taskness. Every unit starts at probability
sigmoid(-1) = 0.27; thirty steps only begin to separate them (the kept policy is the one with
the best held-out score, which may be an early one), so read these as a sketch of what the
full search sharpens.
"""),
    code("""
from interp.viz.heatmaps import layer_head_heatmap, policy_frame

for task in TASKS:
    frame = policy_frame(space, probabilities[task])
    layer_head_heatmap(frame, "probability", zmin=0, zmax=1, title=f"{task}: probability of patching each unit").show()
"""),
    md("""
## Evaluation on held-out prompts

Per task: one-shot, zero-shot, zero-shot + the task vector (units with probability > 0.5, and
the mean over a draw from the policy), and zero-shot + as many random units (`units` says how
many were kept; zero means the policy kept nothing yet and the patched rows equal zero-shot).
"""),
    code("""
from interp.taskvectors.evaluate import evaluate_task_vectors
from interp.viz.curves import results_bars

held_out = build_task_prompts(source, fold=0, n=16, grid=model.grid, seed=2, split="val", tasks=TASKS)
results = evaluate_task_vectors(model, space, stats, probabilities, held_out, sampled=1, seed=0)
results[["task", "condition", "metric", "mean", "sem", "n", "units"]].round(4)
"""),
    code("""
results_bars(results, title="held-out prompts: does the task vector help zero-shot?").show()
"""),
]

# --------------------------------------------------------------------------------------------
# 04: explorer

EXPLORER = [
    md("""
# The patch explorer

Try task-vector patches by hand: pick a task and a prompt, choose which units to patch (layer
ranges of each stack, heads, token groups, optionally narrowed to a policy's units above a
threshold), and see the patched zero-shot prediction beside one-shot, plain zero-shot and the
target, with the task metric of each. *Means of* patches another task's means (does the
low-light vector turn segmentation into enhancement?); *export figure* writes the image row as
HTML / PNG / PDF / SVG.

Everything the widget does is a plain method (`current_mask()`, `predictions()`, `scores()`,
`render()`, `export()`), so it can also be scripted, as below. Built here from 32 prompts per
task and two "policies" taken from the top-taskness units; to explore the demo's REINFORCE
policies instead, pass `interp.pipeline.load_policies(RunDir("runs/demo"), TASKS)` (and that
run's statistics, `load_stats`). About 30 seconds on a CPU.
"""),
    code(SETUP + """
from pathlib import Path

ROOT = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "pyproject.toml").exists()), Path.cwd())
TASKS = DEMO_PIPELINE.tasks
"""),
    md("""
## Means, prompts and policies
"""),
    code("""
from interp.taskvectors.stats import collect
from interp.taskvectors.taskness import taskness, top_units
from interp.taskvectors.units import UnitSpace

train = build_task_prompts(source, fold=0, n=32, grid=model.grid, seed=0, split="trn", tasks=TASKS)
means = {task: collect(model, [batch.canvases], layout="one_shot", task=task, progress=False)
         for task, batch in train.items()}
prompts = build_task_prompts(source, fold=0, n=8, grid=model.grid, seed=2, split="val", tasks=TASKS)

table = taskness(means, by="group")
space = UnitSpace.for_model(model, "group")
policies = {f"top {k} taskness": (space, top_units(table, space, k).float()) for k in (8, 24)}
"""),
    md("""
## Scripting the explorer

Set controls (several at once inside `hold()`, which recomputes once), then read the result.
"""),
    code("""
from interp.viz.explorer import NO_POLICY, PatchExplorer

explorer = PatchExplorer(model, prompts, means, policies, export_dir=ROOT / "runs" / "explorer")
with explorer.hold():
    explorer.controls["task"].value = "lowlight"
    explorer.controls["policy"].value = "top 24 taskness"
print(explorer.describe_mask())
print({name: round(value, 4) for name, value in explorer.scores().items()})
explorer.render().show()
"""),
    code("""
explorer.mask_figure().show()
"""),
    md("""
## The widget

Back to patching every unit of both stacks (no policy), on in-painting, then the live panel.
Move the *prompt* slider, untick the encoder, narrow the decoder layers, or start from a policy.
"""),
    code("""
with explorer.hold():
    explorer.controls["task"].value = "inpainting"
    explorer.controls["policy"].value = NO_POLICY
explorer.widget
"""),
]

NOTEBOOKS = {
    "01_hooks_tour.ipynb": HOOKS_TOUR,
    "02_where_task_vectors_sit.ipynb": TASKNESS,
    "03_reinforce_search.ipynb": REINFORCE,
    "04_patch_explorer.ipynb": EXPLORER,
}


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=NOTEBOOKS[name], metadata=METADATA)
    for i, cell in enumerate(nb.cells):  # stable ids: rebuilding changes nothing
        cell["id"] = f"{Path(name).stem[:2]}-{i:02d}"
    nbformat.validate(nb)
    return nb


def _content(nb: nbformat.NotebookNode) -> tuple:
    """What a review sees: kernel, and each cell's type, source, outputs and execution count."""
    cells = [(c.cell_type, c.source, c.get("outputs", []), c.get("execution_count")) for c in nb.cells]
    return nb.metadata.get("kernelspec"), cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook differs from this script")
    args = parser.parse_args(argv)
    stale = []
    for name in NOTEBOOKS:
        notebook = build(name)
        path = HERE / name
        if args.check:
            if not path.exists() or _content(nbformat.read(path, as_version=4)) != _content(notebook):
                stale.append(name)
        else:
            path.write_text(nbformat.writes(notebook) + "\n")
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {stale}; run python notebooks/build_notebooks.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
