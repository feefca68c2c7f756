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
# # Searching for task vectors with REINFORCE
#
# Taskness ranks candidates; REINFORCE (as in *Finding Visual Task Vectors*) searches for the set
# of units that, patched with the task's mean activations, makes zero-shot forwards do the task.
# One Bernoulli variable per unit; each step samples unit sets, scores them on training prompts,
# and moves the policy towards the better ones.
#
# The official run is 500 steps of 320 samples with the pixel reward (VQGAN-decoded IoU / MSE).
# Here a short search: two tasks, 30 steps of 64 samples, and the **token** reward (minus the
# cross-entropy of the target cell's VQGAN codes: no decoding, much cheaper). Then the learned
# policies as heatmaps, and an evaluation on held-out prompts against zero-shot, one-shot and as
# many random units. About two minutes on a CPU; `interp search` / `make demo` run the full thing.

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

from interp.taskvectors.search import SearchProblem
from interp.taskvectors.search.reinforce import ReinforceConfig, run
from interp.taskvectors.collect import collect
from interp.taskvectors.units import UnitSpace

TASKS = ("segmentation", "lowlight")
CONFIG = ReinforceConfig(steps=30, samples=64, eval_every=10, seed=0)  # official: 500 x 320 (and the pixel reward)
REWARD = "token"  # the training reward; held-out prompts are scored in pixel space
space = UnitSpace.for_model(model, "group")  # one unit = one head at one token group of the zero-shot forward
space

# %% [markdown]
# ## Mean activations per task

# %%
train = build_task_prompts(source, fold=0, n=32, grid=model.grid, seed=0, split="trn", tasks=TASKS)
stats = {task: collect(model, [batch.canvases], layout="one_shot", task=task, progress=False)
         for task, batch in train.items()}

# %% [markdown]
# ## Search
#
# Ten training prompts and sixteen held-out ones per task (the held-out score, in pixel space,
# picks the best policy every `eval_every` steps).

# %%
from interp.data import build_prompts

states = {}
for task in TASKS:  # a progress bar per task (about a minute each on a CPU)
    prompts = build_prompts(source, task, fold=0, n=10 + 16, grid=model.grid, seed=1, split="trn")
    problem = SearchProblem(model, space, stats[task], train=prompts.select(range(10)),
                            held_out=prompts.select(range(10, len(prompts))), reward=REWARD)
    states[task] = run(problem, CONFIG, progress=True)
    print(f"{task:13s} best held-out score {states[task].held_out_score:.4f}, {states[task].units} units kept")
probabilities = {task: torch.sigmoid(state.best_logits.float()) for task, state in states.items()}

# %%
from interp.viz.curves import reinforce_curves

reinforce_curves({task: state.log for task, state in states.items()}, smooth=5,
                 title="REINFORCE: training loss, held-out score, expected units").show()

# %% [markdown]
# ## Where the policies put their units
#
# `policy_frame` turns a policy into a (stack, layer, head, group) table that
# `layer_head_heatmap` draws like taskness. Every unit starts at probability
# sigmoid(-1) = 0.27; thirty steps only begin to separate them (the kept policy is the one with
# the best held-out score, which may be an early one), so read these as a sketch of what the
# full search sharpens.

# %%
from interp.viz.heatmaps import layer_head_heatmap, policy_frame

for task in TASKS:
    frame = policy_frame(space, probabilities[task])
    layer_head_heatmap(frame, "probability", zmin=0, zmax=1, title=f"{task}: probability of patching each unit").show()

# %% [markdown]
# ## Evaluation on held-out prompts
#
# Per task: one-shot, zero-shot, zero-shot + the task vector (units with probability > 0.5, and
# the mean over a draw from the policy), and zero-shot + as many random units (`units` says how
# many were kept; zero means the policy kept nothing yet and the patched rows equal zero-shot).

# %%
from interp.taskvectors.evaluate import evaluate_task_vectors
from interp.viz.curves import results_bars

held_out = build_task_prompts(source, fold=0, n=16, grid=model.grid, seed=2, split="val", tasks=TASKS)
results = evaluate_task_vectors(model, space, stats, probabilities, held_out, sampled=1, seed=0)
results[["task", "condition", "metric", "mean", "sem", "n", "units"]].round(4)

# %%
results_bars(results, title="held-out prompts: does the task vector help zero-shot?").show()
