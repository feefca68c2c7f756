"""Print the README's search-comparison table from one or more ``interp compare-search`` runs.

    python scripts/search_table.py runs/compare            # one run holding every task
    python scripts/search_table.py runs/cmp-a runs/cmp-b   # runs of different tasks, in order
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from interp.compare_search import markdown_table


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    tables = []
    for run in argv:
        path = Path(run) / "search_comparison.csv"
        if not path.exists():
            print(f"{path} not found: run `interp compare-search --run {run}` first", file=sys.stderr)
            return 2
        tables.append(pd.read_csv(path))
    print(markdown_table(pd.concat(tables, ignore_index=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
