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
# # The patch explorer
#
# Try task-vector patches by hand: pick a task and a prompt, start from a policy's units above a
# threshold or from layer ranges, heads and token groups, then **click single units** in the
# layer x head grid (one block per stack and token group; orange = patched). The prompt itself
# (example pair, query) sits beside the one-shot, zero-shot and patched predictions and the
# target, each with the task metric, and below them the metric over all prompts of the task
# (mean ± sem). The *compare A / B* tab pins the selection (or a policy) as set A while you edit B
# and shows both predictions, both metrics and B - A; *shift-click* a unit to see its head's
# attention pattern (unpatched and patched) in the *attention* tab. *Means of* patches another
# task's means; *export figure* writes the view as HTML / PNG / PDF / SVG (names carry the mask's
# size and hash), *export selection* the units as a policy file plus the Python that reopens the
# view, *save state* the widget as JSON.
#
# Everything the widget does is a plain method (`current_mask()`, `toggle()`, `predictions()`,
# `scores()`, `set_scores()`, `render()`, `export()`, `state()` / `load_state()`, `compare.pin()`,
# `compare.result()`, `attention.select(stack, layer, head)`, `attention.figure()`), so it can also be
# scripted, as below. Built here from 32 prompts per task and two "policies" taken from the
# top-taskness units; to explore a run's REINFORCE policies instead, pass
# `interp.viz.explorer.run_policies("runs/demo")` (and that run's statistics,
# `RunDir("runs/demo").load_stats(TASKS)`). About 30 seconds on a CPU.

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

from pathlib import Path

ROOT = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "pyproject.toml").exists()), Path.cwd())
TASKS = DEMO_PIPELINE.tasks

# %% [markdown]
# ## Means, prompts and policies

# %%
from interp.taskvectors.collect import collect
from interp.taskvectors.taskness import taskness, top_units
from interp.taskvectors.units import UnitSpace

train = build_task_prompts(source, fold=0, n=32, grid=model.grid, seed=0, split="trn", tasks=TASKS)
means = {task: collect(model, [batch.canvases], layout="one_shot", task=task, progress=False)
         for task, batch in train.items()}
prompts = build_task_prompts(source, fold=0, n=8, grid=model.grid, seed=2, split="val", tasks=TASKS)

table = taskness(means, by="group")
space = UnitSpace.for_model(model, "group")
policies = {f"top {k} taskness": (space, top_units(table, space, k).float()) for k in (8, 24)}

# %% [markdown]
# ## Scripting the explorer
#
# Set controls (several at once inside `hold()`, which recomputes once), then read the result.

# %%
from interp.viz.explorer import NO_POLICY, PatchExplorer

explorer = PatchExplorer(model, prompts, means, policies, export_dir=ROOT / "runs" / "explorer")
with explorer.hold():
    explorer.controls["task"].value = "lowlight"
    explorer.controls["policy"].value = "top 24 taskness"
explorer.toggle(0)  # one more unit, as a click on the grid does
print(explorer.describe_mask())
print({name: round(value, 4) for name, value in explorer.scores().items()})
print({name: f"{mean:.4f} ± {sem:.4f}" for name, (mean, sem, n) in explorer.set_scores().items()})
explorer.render().show()

# %%
explorer.mask_figure().show()

# %% [markdown]
# Pin this selection as set A, drop the clicked unit from B, and compare; then one decoder head's
# attention on this prompt, without and with the patch.

# %%
explorer.compare.pin()
explorer.toggle(0)
result = explorer.compare.result()
print({k: f"{m:+.4f} ± {s:.4f}" for k, (m, s, n) in result.prompt_set.items()}, result.verdict(result.prompt_set["diff"][0]))
explorer.compare.clear()
explorer.attention.select("decoder", 0, 3)
explorer.attention.figure().show()

# %% [markdown]
# ## The widget
#
# Back to nothing patched (no policy, no layer range) on in-painting, then the live panel: click
# units of the grid, move the *prompt* slider, or start from a policy.

# %%
with explorer.hold():
    explorer.controls["task"].value = "inpainting"
    explorer.controls["policy"].value = NO_POLICY
    explorer.controls["encoder"].value = explorer.controls["decoder"].value = False
explorer.widget
