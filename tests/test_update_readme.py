"""scripts/update_readme.py: marked README sections are regenerated from run outputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_renders_demo_table_from_csv(tmp_path) -> None:
    update_readme = _module()
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "results.csv").write_text(
        "task,condition,method,metric,higher_is_better,mean,sem,n,units,diff_zero_shot,ci_low_zero_shot,ci_high_zero_shot,"
        "diff_strongest_control,ci_low_strongest_control,ci_high_strongest_control\n"
        "lowlight,one_shot,,mse,False,0.5,0.01,10,0,,,,,,\nlowlight,zero_shot,,mse,False,1.25,0.02,10,0,0,0,0,,,\n"
        "lowlight,zero_shot+tv,attribution,mse,False,0.6049,0.02,10,12,0.6451,0.5,0.8,0.1951,0.1,0.3\n"
        "lowlight,zero_shot+random,,mse,False,0.8,0.02,10,12,0.45,0.3,0.6,0,0,0\n"
        "lowlight,zero_shot+control:all,,mse,False,0.9,0.02,10,168,0.35,0.2,0.5,-0.1,-0.2,0\n"
    )
    (tmp_path / "runs" / "demo" / "manifest.json").write_text('{"searches": {"lowlight": {"reward": "token"}}}')
    text = "intro\n<!-- BEGIN table:demo -->\nold numbers\n<!-- END table:demo -->\n<!-- BEGIN table:weights -->\nkept\n<!-- END table:weights -->\n"
    new, updated, skipped = update_readme.update(text, root=tmp_path)
    assert updated == ["demo"] and skipped == ["weights (runs/weights/comparison.csv missing)"]
    assert "old numbers" not in new and "kept" in new and new.startswith("intro\n")
    assert "| lowlight (MSE ↓) | attribution (token) | 12 | 0.500 | 1.250 | 0.605 | 0.800 | 0.900 | +0.645 [+0.500, +0.800] | " \
        "+0.195 [+0.100, +0.300] | 86% |" in new
    assert update_readme.update(new, root=tmp_path)[0] == new  # idempotent


def test_every_readme_section_has_a_renderer() -> None:
    update_readme = _module()
    names = [m["name"] for m in update_readme.SECTION.finditer((ROOT / "README.md").read_text())]
    assert names and set(names) <= set(update_readme.RENDERERS)


def test_renders_science_summary_with_reward_agreement(tmp_path) -> None:
    update_readme = _module()
    demo = tmp_path / "runs" / "demo"
    demo.mkdir(parents=True)
    header = ("task,condition,kind,metric,higher_is_better,mean,spread,seeds,diff_zero_shot,ci_low_zero_shot,ci_high_zero_shot,"
              "diff_strongest_control,ci_low_strongest_control,ci_high_strongest_control,strongest_control,units,forwards,"
              "held_out_score,reward\n")
    rows = [("one_shot", "reference", 0.5, "", ""), ("control:none", "control", 0.9, "", ""),
            ("control:all", "control", 0.8, "", ""), ("reinforce", "method", 0.7, -0.75, "token"),
            ("prune", "method", 0.6, -0.6, "pixel")]
    body = "".join(f"inpainting,{c},{k},mse,False,{m},0.01,3,{0.9 - m:.2f},0.01,0.3,0.1,0.01,0.2,control:all,5,100,{h},{r}\n"
                   for c, k, m, h, r in rows)
    (demo / "search_comparison.csv").write_text(header + body)
    (demo / "agreement.csv").write_text("task,reward,reference,pearson\ninpainting,pixel,pixel,1.0\ninpainting,token,pixel,-0.2\n")
    (demo / "manifest.json").write_text('{"data": "synthetic:1234"}')
    second = tmp_path / "runs" / "demo-7"  # a second data seed: its rows follow the first's, task by task
    second.mkdir()
    (second / "search_comparison.csv").write_text(header + body.replace("prune,method,mse,False,0.6", "prune,method,mse,False,0.65"))
    (second / "manifest.json").write_text('{"data": "synthetic:7"}')
    text = "<!-- BEGIN table:science -->\nold\n<!-- END table:science -->\n"
    new, updated, _ = update_readme.update(text, root=tmp_path)
    assert updated == ["science"]
    # prune is picked (best held-out score); share of gain (0.6 - 0.9) / (0.5 - 0.9) = 75%; the all-units control 25%
    assert "| inpainting | synthetic:1234 | MSE ↓ | pixel | +1.00 | prune | 0.600 | 75% | +0.300 [+0.010, +0.300] |" in new
    assert "| inpainting | synthetic:7 | MSE ↓ | pixel | | prune | 0.650 | 62% |" in new.replace("|  |", "| |")
    assert new.index("synthetic:1234") < new.index("synthetic:7") and "| all 0.800 (25%) |" in new


def test_renders_lens_and_interventions_tables(tmp_path) -> None:
    update_readme = _module()
    lens = tmp_path / "runs" / "demo" / "lens"
    lens.mkdir(parents=True)
    rows = ["task,condition,readout,stack,layer,metric,higher_is_better,mean,sem,n,solved_at"]
    for condition, solved in (("zero_shot", "enc 1, dec 0"), ("zero_shot+tv", "enc 0, dec 1")):
        for readout, stack, layer, mean in (("enc 0", "encoder", 0, 0.1), ("dec embed", "decoder", -1, 0.2),
                                            ("dec 0", "decoder", 0, 0.25)):
            rows.append(f"segmentation,{condition},{readout},{stack},{layer},iou,True,{mean},0.01,4,\"{solved}\"")
    (lens / "segmentation.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "runs" / "lens").mkdir()
    (tmp_path / "runs" / "lens" / "interventions.csv").write_text(
        "task,condition,metric,higher_is_better,mean,sem,n,intervention,alpha,units,zero_shot,one_shot,best\n"
        "lowlight,zero_shot+tv:replace,mse,False,0.6,0.1,4,replace,1.0,3,2.0,0.5,False\n"
        "lowlight,zero_shot+tv:add(a=1),mse,False,0.55,0.1,4,add,1.0,3,2.0,0.5,True\n")
    text = "<!-- BEGIN table:lens -->\n<!-- END table:lens -->\n<!-- BEGIN table:interventions -->\n<!-- END table:interventions -->\n"
    new, updated, _ = update_readme.update(text, root=tmp_path)
    assert updated == ["lens", "interventions"]
    assert "| segmentation | zero-shot + task vector | mIoU ↑ | 0.100 | 0.200 | 0.250 | enc 0, dec 1 |" in new
    assert "| lowlight (MSE ↓) | 0.500 | 2.000 | 0.600 | **0.550** |" in new


def test_the_bench_table_takes_only_bench_runs_from_bench_runs(tmp_path) -> None:
    update_readme = _module()
    (tmp_path / "runs").mkdir()
    row = {"bench": "collect", "model": "tiny", "device": "cpu", "error": "x"}
    (tmp_path / "results.json").write_text(json.dumps({"results": [row]}))
    (tmp_path / "runs" / "demo_time.json").write_text(json.dumps({"bench": "demo_time", "wall_s": 1.0}))
    table = update_readme.render_bench(tmp_path / "results.json")
    assert "collect" in table and "demo_time" not in table


def test_renders_agreement_per_task_reward_and_data_seed(tmp_path) -> None:
    update_readme = _module()
    header = "task,reward,reference,pearson,spearman,sign_agreement,masks,prompts,forwards,low,threshold\n"
    for run, data, token in (("demo", "synthetic:1234", -0.02), ("demo-7", "synthetic:7", 0.1)):
        folder = tmp_path / "runs" / run
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({"data": data}))
        (folder / "agreement.csv").write_text(header + f"inpainting,token,pixel,{token},0.0,0.6,48,24,100,True,0.5\n"
                                              "inpainting,pixel,pixel,1.0,1.0,1.0,48,24,100,False,0.5\n"
                                              "segmentation,token,pixel,0.88,0.75,0.74,48,24,100,False,0.5\n")
    text = "<!-- BEGIN table:agreement -->\n<!-- END table:agreement -->\n"
    new, updated, _ = update_readme.update(text, root=tmp_path)
    assert updated == ["agreement"] and "| pixel |" not in new  # the metric's own row is left out
    lines = [line for line in new.splitlines() if line.startswith("| segmentation") or line.startswith("| inpainting")]
    assert lines[0].startswith("| segmentation | synthetic:1234 | token | +0.880 |")  # task order, then data seed
    assert lines[2] == "| inpainting | synthetic:1234 | token | -0.020 | +0.000 | 60% | 48 x 24 | low: warned |"
    assert lines[3].startswith("| inpainting | synthetic:7 | token | +0.100 |")


def test_renders_matched_budgets_by_task_budget_and_method(tmp_path) -> None:
    update_readme = _module()
    folder = tmp_path / "runs" / "budgets"
    folder.mkdir(parents=True)
    header = "task,condition,metric,mean,diff_zero_shot,ci_low_zero_shot,ci_high_zero_shot,units,effective_forwards\n"
    rows = ["lowlight,reinforce,mse,0.6,1.0,0.9,1.1,20,2000", "lowlight,reinforce@pipeline,mse,0.55,1.05,0.95,1.15,30,160000",
            "lowlight,random@1000,mse,0.9,0.7,0.6,0.8,8,990", "lowlight,gradient@250,mse,0.7,0.9,0.8,1.0,40,248.5"]
    (folder / "search_comparison.csv").write_text(header + "\n".join(rows) + "\n")
    text = "<!-- BEGIN table:budgets -->\n<!-- END table:budgets -->\n"
    new, updated, _ = update_readme.update(text, root=tmp_path)
    assert updated == ["budgets"]
    lines = [line for line in new.splitlines() if line.startswith("| lowlight")]
    assert len(lines) == 3  # the method's own row (no budget) is not a matched-budget row
    assert lines[0] == "| lowlight | gradient | 250 | 248 | 40 | MSE 0.700 | +0.900 [+0.800, +1.000] |"
    assert lines[1].startswith("| lowlight | random | 1000 |") and lines[2].startswith("| lowlight | reinforce | pipeline | 160000 |")
