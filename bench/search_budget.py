"""What a search comparison cost, and whether ``gradient`` matches REINFORCE at 1/10 of its forwards.

Reads a run written by ``interp compare-search`` (no timing of its own: the searches counted
their forwards and seconds while they ran). Prints one JSON line: per task, each method's
held-out search score (mean over seeds), forwards and seconds; gradient's forwards as a
fraction of REINFORCE's (the comparison's REINFORCE, and the official 500 x 320 one);
whether gradient reaches REINFORCE's held-out score at most 1/10 of its forwards; and the
seconds summed over every search of the run.

    python -m bench.search_budget --run runs/compare
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def summarize(run: Path) -> dict:
    from interp.demo import DEMO_PIPELINE
    from interp.taskvectors.search.reinforce import ReinforceConfig
    from interp.run import RunDir
    from interp.taskvectors.policy import Policy
    from interp.taskvectors.search import METHODS

    rows = []
    compare = RunDir(run).comparison()
    for method in METHODS:
        for task, seed in compare.searches(method):
            policy = Policy.load(compare.policy_path(task, method, seed))
            budget = policy.metadata.get("budget", {})
            rows.append({"task": task, "method": method, "seed": seed, "held_out": policy.metadata.get("best_score"),
                         "forwards": budget.get("forwards"), "backwards": budget.get("backwards"),
                         "seconds": budget.get("seconds"), "units": int(policy.mask().sum())})
    table = pd.DataFrame(rows)
    official = ReinforceConfig()  # the official 500 x 320 REINFORCE, with the demo's held-out prompts
    demo_forwards = official.steps * official.samples + (official.steps // official.eval_every) * DEMO_PIPELINE.n_search_eval
    out: dict = {"bench": "search_budget", "run": str(run), "searches": len(table), "search_seconds_total": float(table.seconds.sum()),
                 "official_reinforce_forwards": demo_forwards, "tasks": {}}
    for task, part in table.groupby("task"):
        means = part.groupby("method")[["held_out", "forwards", "backwards", "seconds", "units"]].mean()
        entry = {m: {k: round(float(v), 5) for k, v in r.items()} for m, r in means.iterrows()}
        if {"gradient", "reinforce"} <= set(means.index):
            g, rf = means.loc["gradient"], means.loc["reinforce"]
            entry["gradient_forward_fraction"] = round(float(g.forwards / rf.forwards), 4)
            entry["gradient_forward_fraction_of_official_reinforce"] = round(float(g.forwards / demo_forwards), 4)
            entry["gradient_held_out_minus_reinforce"] = round(float(g.held_out - rf.held_out), 5)
            per_seed = part.pivot(index="seed", columns="method", values="held_out")
            entry["gradient_at_least_reinforce_seeds"] = f"{int((per_seed.gradient >= per_seed.reinforce).sum())}/{len(per_seed)}"
            entry["gradient_reaches_reinforce_at_1_10"] = bool(g.held_out >= rf.held_out and g.forwards <= rf.forwards / 10)
        out["tasks"][task] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run directory written by interp compare-search")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    result = summarize(args.run)
    text = json.dumps(result)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
