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
# # Where do task vectors sit? Taskness of every head
#
# A *task vector* is a set of heads whose mean output, patched into a zero-shot forward, makes
# the model do a task. Good candidates are heads whose output depends on the task but not on the
# particular prompt. *Taskness* measures that per (layer, head, token group): the between-task
# sum of squares of the head's output over the within-task one (BCSS / WCSS), over one-shot
# prompts labelled by task.
#
# Here: collect one-shot statistics of every head's `hook_z` for the demo's four tasks on 32
# prompts each (the official pipeline keeps the 100 best of many scored pairs:
# `interp.pipeline.select_prompts`), compute taskness, draw it over layers x heads, and check that
# patching the top-taskness units helps zero-shot. About a minute on a CPU.

# %%
import torch

import interp
from interp.data import SyntheticPascal, build_task_prompts
from interp.demo import DEMO_PIPELINE, HELD_OUT_SEED
from interp.viz.style import use_paper_style

use_paper_style()  # plotly figures in the paper style (fonts, colours) for ad-hoc px plots too
torch.manual_seed(0)
model = interp.load_model("tiny")
source = SyntheticPascal(seed=HELD_OUT_SEED)  # the synthetic Pascal-5i analogue, a seed the model never trained on

TASKS = DEMO_PIPELINE.tasks
N_COLLECT = 32
print(TASKS)

# %% [markdown]
# ## Collect per-task statistics
#
# `collect` keeps running sums of `z` and `z**2` per slot in float64 (mergeable by addition,
# saved as safetensors with a JSON sidecar).

# %%
from interp.taskvectors.collect import collect

train = build_task_prompts(source, fold=0, n=N_COLLECT, grid=model.grid, seed=0, split="trn", tasks=TASKS)
stats = {task: collect(model, [batch.canvases], layout="one_shot", task=task, dataset=source.name, progress=False)
         for task, batch in train.items()}
stats["segmentation"]

# %% [markdown]
# ## Taskness
#
# One row per (site, head, token group); high = task-specific and invariant within a task.

# %%
from interp.taskvectors.taskness import taskness

table = taskness(stats, by="group")
table.sort_values("taskness", ascending=False).head(10)

# %%
from interp.viz.heatmaps import layer_head_heatmap

layer_head_heatmap(table, "taskness", log=True,
                   title="taskness (log10 BCSS / WCSS) per head and token group, one-shot prompts").show()

# %% [markdown]
# Pooled over all tokens of a head (`by="head"`), and summarised per stack and token group:

# %%
layer_head_heatmap(taskness(stats, by="head"), "taskness", log=True, title="taskness per head (all tokens)").show()

# %%
import plotly.express as px

from interp.viz.heatmaps import GROUP_LABELS

summary = table.groupby(["stack", "group"], sort=False)["taskness"].median().reset_index()
summary["group"] = summary["group"].map(lambda g: GROUP_LABELS.get(g, g))  # "example input", as in every figure
px.bar(summary, x="group", y="taskness", color="stack", barmode="group", log_y=True, height=320,
       title="median taskness per stack and token group").show()

# %% [markdown]
# ## Do top-taskness units carry the task?
#
# Patch the `k` units of highest taskness (a `group` unit = one head at one token group of the
# zero-shot forward) with each task's mean, on held-out prompts, and compare with plain
# zero-shot and one-shot. (IoU: higher is better; MSE: lower is better.)

# %%
import pandas as pd

from interp.taskvectors.evaluate import score_masks, score_prompts, summarize
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
        (patched,) = score_masks(model, space, stats[task], batch, top_units(table, space, k)[None])
        rows.append(summarize(task, f"zero_shot+top{k}", patched.metric))
results = pd.DataFrame(rows)
results_bars(results, title="zero-shot + the top-k taskness units, held-out prompts").show()
wide = results.pivot(index=["task", "metric"], columns="condition", values="mean")  # metric: iou ↑, mse ↓
wide[list(dict.fromkeys(results["condition"]))].round(4)
