"""compare-search: the table's structure, seeds and intervals on a small random model, and the bootstrap."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import torch

from interp.compare_search import CompareConfig, best_method, compare_search, markdown_table, seed_summary
from interp.taskvectors.evaluate import paired_bootstrap


def test_paired_bootstrap_covers_the_mean_and_narrows_with_more_prompts() -> None:
    g = torch.Generator().manual_seed(0)
    small, large = 0.3 + torch.randn(20, generator=g), 0.3 + torch.randn(2000, generator=g)
    lo_s, hi_s = paired_bootstrap(small, 2000)
    lo_l, hi_l = paired_bootstrap(large, 2000)
    assert lo_l < 0.3 < hi_l and lo_s < float(small.mean()) < hi_s
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5
    assert paired_bootstrap(torch.tensor([float("nan"), 1.0]), 100) != paired_bootstrap(torch.tensor([0.0, 1.0]), 100)


@pytest.mark.slow
def test_compare_search_on_a_random_model(tmp_path) -> None:
    from interp.data.synthetic import SyntheticPascal
    from interp.data.tasks import build_prompts
    from interp.models.presets import random_model
    from interp.pipeline import PipelineConfig, collect_provenance
    from interp.provenance import normalized
    from interp.run import RunDir
    from interp.taskvectors.collect import collect
    from interp.taskvectors.search.base import size_grid
    from interp.taskvectors.units import UnitSpace

    model = random_model(seed=0, with_vqgan=True)
    source = SyntheticPascal(seed=5)
    tasks = ("lowlight", "segmentation")
    stats = {t: collect(model, [build_prompts(source, t, 0, 6, model.grid, seed=0, split="trn").canvases], "one_shot", task=t,
                        progress=False) for t in tasks}
    for t in tasks:  # what `interp collect` records: every search checks the statistics it reuses
        stats[t].extra["provenance"] = normalized(collect_provenance(model, source, t, PipelineConfig(tasks=tasks, granularity="head")))
    cfg = PipelineConfig(tasks=tasks, granularity="head")
    settings = {"reinforce": {"steps": 4, "samples": 8, "eval_every": 2, "select": "threshold"},
                "random": {"draws": 3, "max_units": 8}, "taskness": {"max_units": 8}}
    ccfg = CompareConfig(methods=("reinforce", "random", "taskness"), seeds=(0, 1), n_train=3, n_search_eval=3, n_eval=4,
                         bootstrap=200, settings=settings, reward="token")
    run = RunDir.create(tmp_path / "run", command="test", config={})
    table = compare_search(run, model, source, stats, cfg, ccfg, progress=False)
    assert (tmp_path / "run" / "search_comparison.csv").exists()
    assert run.comparison().policy_path("lowlight", "random", seed=1).exists()  # every method's search, through RunDir
    for task in tasks:
        part = table[table.task == task].set_index("condition")
        assert {"reinforce", "random", "taskness", "control:random", "control:stratified", "control:best_of_random",
                "control:taskness", "control:sweep", "control:all", "control:none", "one_shot"} == set(part.index)
        assert (part.loc[["reinforce", "random", "taskness"], "seeds"] == 2).all()
        assert part.loc["control:none", "diff_zero_shot"] == 0.0
        ok = part.dropna(subset=["ci_low_zero_shot"])
        assert (ok.ci_low_zero_shot <= ok.diff_zero_shot + 1e-12).all() and (ok.diff_zero_shot <= ok.ci_high_zero_shot + 1e-12).all()
        # steps x samples + evaluations x held-out prompts + the size scan (every top-k size up to all units)
        n_units = len(UnitSpace.for_model(model, "head"))
        assert part.loc["reinforce", "forwards"] == 4 * 8 + 2 * 3 + len(size_grid(n_units)) * 3
        assert part.loc["reinforce", "reward"] == "token" and -1 <= part.loc["reinforce", "reward_pearson"] <= 1
        assert best_method(table, task) in ("reinforce", "random", "taskness")
    summary = seed_summary(table)
    assert all(f"{task} (" in summary and f"picked by held-out score: {best_method(table, task)}" in summary for task in tasks)
    markdown = markdown_table(table)
    assert markdown.count("\n") == 1 + len(table) - len(tasks)  # header, rule, one row per condition but zero-shot itself
    again = compare_search(run, model, source, stats, cfg, ccfg, progress=False)  # resumed from the run: same table
    assert again.drop(columns=["seconds"]).equals(table.drop(columns=["seconds"]))
    curves = pd.read_csv(tmp_path / "run" / "size_curves.csv")
    reinforce = curves[(curves.method == "reinforce") & (curves.task == "lowlight") & (curves.seed == 0)]
    assert reinforce["units"].max() == n_units  # sizes scanned up to every unit
    # matched budgets: every method again at one budget, its forwards within it
    budgeted = compare_search(run, model, source, stats, cfg, replace(ccfg, budgets=(120,), pipeline_row=False), progress=False)
    part = budgeted[budgeted.task == "lowlight"].set_index("condition")
    assert {"reinforce@120", "random@120"} <= set(part.index) and "taskness@120" not in part.index  # fixed cost
    assert (part.loc[["reinforce@120", "random@120"], "effective_forwards"] <= 120).all()
    assert (part.loc[["reinforce@120", "random@120"], "budget"] == 120).all()
    assert (part.loc[["reinforce@120", "random@120"], "kind"] == "method").all()
