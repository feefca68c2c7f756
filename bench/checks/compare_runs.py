"""Compare two baseline runs: results.csv (mean/sem/n), sweep.csv, taskness.csv, search_comparison.csv, masks."""
import sys, pandas as pd, numpy as np
from pathlib import Path
a, b = Path(sys.argv[1]), Path(sys.argv[2])
ok = True
def cmp(name, cols):
    global ok
    x, y = pd.read_csv(a / name), pd.read_csv(b / name)
    for c in cols:
        if c not in x: continue
        u, v = x[c].to_numpy(), y[c].to_numpy()
        same = (u.shape == v.shape) and all((p == q) or (isinstance(p, float) and np.isnan(p) and np.isnan(q)) for p, q in zip(u, v))
        print(f"{name:28s} {c:18s} {'IDENTICAL' if same else 'DIFFERENT'}")
        if not same:
            ok = False
            print(pd.DataFrame({"old": u, "new": v}).head(40).to_string())
cmp("results.csv", ["task", "condition", "mean", "sem", "n"])
cmp("sweep.csv", ["unit", "reward", "baseline", "delta"])
cmp("taskness.csv", ["taskness"])
cmp("search_comparison.csv", ["condition", "mean", "spread", "diff_zero_shot", "ci_low_zero_shot", "ci_high_zero_shot", "units", "forwards"])
print("ALL IDENTICAL" if ok else "SOME DIFFER")
