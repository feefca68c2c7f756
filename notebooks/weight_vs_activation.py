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
# # Weight-space vs activation-space task vectors (tiny MAE-VQGAN)
#
# One task vector per task in **weight space** (fine-tune the MAE on that task's canvases with the
# task always shown in the target cell and *no* example pair, `tau_t = theta_t - theta_0`) against
# the **activation-space** task vectors of the pipeline (mean head outputs patched into chosen
# heads and tokens). Every method is scored **zero-shot** (query only) on the demo's held-out prompts
# (IoU for segmentation, higher is better; MSE on the target cell otherwise, lower is better);
# one-shot is the in-context reference.
#
# The table comes from
#
# ```
# interp compare-weights --out runs/weights --activation-run runs/demo
# ```
#
# (see `interp/comparison/weights.py`). This notebook only reads `runs/weights/comparison.csv`; if it is
# missing it runs the command with `--quick` (a smoke test whose numbers mean nothing) so that it
# still runs top to bottom.

# %%
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import plotly.express as px

from interp.viz.style import OKABE_ITO, apply_style, metric_label, use_paper_style

use_paper_style()  # fonts, colours and sizes of the paper figures

ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "interp" / "comparison" / "weights.py").exists())
RUN = Path(os.environ.get("WEIGHTS_RUN", ROOT / "runs" / "weights"))
SMOKE = not (RUN / "comparison.csv").exists()
if SMOKE:
    RUN = ROOT / "runs" / "weights-quick"
    if not (RUN / "comparison.csv").exists():
        subprocess.run([sys.executable, "-m", "interp.cli", "compare-weights", "--out", str(RUN),
                        "--quick", "--threads", "1", "--no-progress"], check=True, cwd=ROOT)
    print("SMOKE TEST: no real run found, showing the --quick table (its numbers mean nothing)")
table = pd.read_csv(RUN / "comparison.csv")
print(RUN)

# %% [markdown]
# ## The table
#
# `value` is the mean over the held-out prompts (`sem` its standard error, `n` the prompts with a
# defined score); `storage_floats` is what a method keeps beside the base weights to do that task;
# `train_seconds` the measured wall-clock to produce it (prerequisites included; `notes` break it
# down and give the chosen coefficients).

# %%
METHODS = ["zero_shot", "one_shot", "finetuned", "task_arithmetic", "task_addition",
           "atlas", "atlas_loo", "basis_ae", "basis_pca", "activation_tv"]
FAMILY = {"zero_shot": "base", "one_shot": "base", "activation_tv": "activation space"}
table["family"] = table["method"].map(FAMILY).fillna("weight space")
table["better"] = table["metric"].map({"iou": "higher is better"}).fillna("lower is better")
FAMILY_COLORS = {"base": "#999999", "weight space": OKABE_ITO[0], "activation space": OKABE_ITO[1]}
wide = table.pivot(index="method", columns=["task", "metric"], values="value").reindex(METHODS)
wide.style.format("{:.4f}", na_rep="-")

# %%
fig = px.bar(
    table, x="method", y="value", error_y="sem", color="family", facet_col="task", facet_col_wrap=3,
    category_orders={"method": METHODS, "task": list(dict.fromkeys(table["task"])), "family": list(FAMILY_COLORS)},
    color_discrete_map=FAMILY_COLORS, hover_data=["metric", "n", "storage_floats", "train_seconds", "notes"],
    title=("SMOKE TEST - " if SMOKE else "") + "zero-shot score on held-out prompts", labels={"value": ""},
)
METRIC_OF = dict(zip(table["task"], table["metric"]))
fig.update_yaxes(matches=None, showticklabels=True)
fig.for_each_annotation(lambda a: a.update(text=(t := a.text.split("=")[-1]) + f" ({metric_label(METRIC_OF[t])})"))
fig.update_xaxes(tickangle=45, title_text="")
apply_style(fig, width="text", height=650).show()

# %% [markdown]
# ## What each method costs
#
# Storage in floats beside the base model (log scale) and the seconds it took to produce, per
# method (median over tasks). Shared objects (the T task vectors aTLAS mixes, a basis) are counted
# in full for every task.

# %%
costs = (table.groupby("method", sort=False)[["storage_floats", "train_seconds"]].median()
         .reindex(METHODS).reset_index())
costs["family"] = costs["method"].map(FAMILY).fillna("weight space")
fig = px.bar(costs[costs["storage_floats"] > 0], x="method", y="storage_floats", color="family", log_y=True,
             color_discrete_map=FAMILY_COLORS, hover_data=["train_seconds"], title="stored floats per task (log scale)",
             labels={"storage_floats": "stored floats per task", "method": ""})
apply_style(fig, width="column", height=400).show()
costs

# %%
pd.set_option("display.max_colwidth", None)
table[["task", "method", "notes"]]
