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
# Try task-vector patches by hand: pick a task and a prompt, choose what to patch, and see the
# prediction change. **What is patched** is exactly what the controls show: a policy's units above
# its threshold (*patch: policy*, "none" = no units), plus every unit of a ticked layer range, kept
# only for the heads and token groups switched on, plus the units you **click** on the grid (set on
# or off by hand; clicks are kept when you change the policy, the task, the prompt or the patched
# forward, and *clear clicks* drops them). The legend above the grid names every mark.
#
# **Which units carry a task:** *grid colour: effect alone* colours each unit by the task's change
# when that unit alone is patched (the run's `sweep.csv`, or *sweep this task* computes it here);
# the line under the legend lists the largest. The policy dropdown offers the task's policies of
# every search method of the run. Below the grid: the prompt, the one-shot, zero-shot and patched
# predictions beside the target, each with its metric (*difference to target* shows where each
# prediction is off), and the metric over all prompts with the **paired 95% interval** of each
# prediction minus zero-shot. The *compare A / B* tab pins a set as A while you edit B; *shift-click*
# a unit for its head's attention. *export figure* writes the view and the mask grid, *export
# selection* the units as a `policy.safetensors` plus the Python that reopens the view.
#
# With a demo run (`interp demo --out runs/demo`, or `INTERP_RUN=<folder>`) the explorer reads that
# run's statistics, policies and sweep; without one it collects statistics here (32 prompts per
# task) and offers taskness top-k sets. About a minute on a CPU.

# %%
import os
from pathlib import Path

import torch

import interp
from interp.data import SyntheticPascal, build_task_prompts
from interp.demo import DEMO_PIPELINE, HELD_OUT_SEED
from interp.viz.style import use_paper_style

use_paper_style()  # plotly figures in the paper style (fonts, colours) for ad-hoc px plots too
torch.manual_seed(0)
model = interp.load_model("tiny")
source = SyntheticPascal(seed=HELD_OUT_SEED)  # the synthetic Pascal-5i analogue, a seed the model never trained on

ROOT = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "pyproject.toml").exists()), Path.cwd())
TASKS = DEMO_PIPELINE.tasks
RUN = Path(os.environ.get("INTERP_RUN", ROOT / "runs" / "demo"))

# %% [markdown]
# ## Means, prompts, policies and single-unit effects
#
# From the run when there is one (`RunDir(RUN).load_stats(TASKS)`, `run_policies(RUN)`: every
# method's policies, the run's `sweep.csv`), else computed here. The explorer's own prompts are
# 32 held-out prompts per task (the metric's interval needs them).

# %%
from interp.run import MissingArtifactError, RunDir
from interp.taskvectors.collect import collect
from interp.taskvectors.taskness import taskness, top_units
from interp.taskvectors.units import UnitSpace
from interp.viz.explorer import UnitEffects, run_policies

prompts = build_task_prompts(source, fold=0, n=32, grid=model.grid, seed=2, split="val", tasks=TASKS)
run = RunDir(RUN)
if run.stats_path(TASKS[0]).exists():
    means = run.load_stats(TASKS, model)
    try:
        policies = run_policies(RUN)  # every method's; run_policies(RUN, method="greedy") for one
    except MissingArtifactError:  # no search in this run yet
        policies = {}
    effects = UnitEffects.from_run(RUN)
    print(f"from the run {RUN}: {sorted(policies)}; sweep of {sorted(effects.tables) or 'no task'}")
else:
    train = build_task_prompts(source, fold=0, n=32, grid=model.grid, seed=0, split="trn", tasks=TASKS)
    means = {task: collect(model, [batch.canvases], layout="one_shot", task=task, progress=False)
             for task, batch in train.items()}
    space = UnitSpace.for_model(model, "group")
    table = taskness(means, by="group")
    policies = {f"top {k} taskness": (space, top_units(table, space, k).float()) for k in (8, 24)}
    effects = None
    print(f"no run at {RUN}: statistics collected here; taskness top-8 / top-24 as policies")

# %% [markdown]
# ## Which heads carry low-light, and what does patching only encoder L3 H5 do?
#
# Scripted here (the widget below does the same by clicks): the effect of each unit alone
# (computed on this notebook's prompts when the run has no sweep), then encoder layer 3, head 5
# alone (every token group of it), with the metric over all prompts and its paired interval
# against zero-shot.

# %%
from interp.viz.explorer import NO_POLICY, PatchExplorer

explorer = PatchExplorer(model, prompts, means, policies, effects=effects, export_dir=ROOT / "runs" / "explorer")
explorer.controls["task"].value = "lowlight"
if not explorer.effects.has("lowlight"):
    explorer.sweep_task(progress=False)  # every head of the zero-shot forward alone, on the 32 prompts
print(explorer.effects.describe("lowlight"))
print("largest effects:", ", ".join(f"{name} {delta:+.3f}" for name, delta in explorer.effects.top("lowlight")))
with explorer.hold():
    explorer.controls["policy"].value = NO_POLICY
    explorer.controls["encoder"].value = True
    explorer.controls["encoder_layers"].value = (3, 3)
    explorer.controls["heads"].value = (5,)
print(explorer.describe_mask())
print(explorer.interval_text().replace("<br>", "\n"))
explorer.render().show()

# %% [markdown]
# Pin this selection as set A, add one more unit to B (as a click on the grid does), and compare; then one decoder
# head's attention on this prompt, without and with the patch.

# %%
explorer.compare.pin()
explorer.toggle(0)
result = explorer.compare.result()
print({k: f"{m:+.4f} ± {s:.4f}" for k, (m, s, n) in result.prompt_set.items()}, result.verdict(*result.prompt_set["diff"][:2]))
explorer.compare.clear()
explorer.clear_clicks()
explorer.attention.select("decoder", 0, 3)
explorer.attention.figure().show()

# %% [markdown]
# ## The widget
#
# Back to nothing patched on in-painting, the grid coloured by low-light's effects cleared; click
# units of the grid, move the *prompt* slider, or choose a policy.

# %%
with explorer.hold():
    explorer.controls["task"].value = "inpainting"
    explorer.controls["policy"].value = NO_POLICY
    explorer.controls["encoder"].value = explorer.controls["decoder"].value = False
    explorer.controls["heads"].value = tuple(range(model.config.mae.num_heads))
explorer.widget
