"""How long the main job takes: ``interp demo`` under ``/usr/bin/time -v``, with each stage's seconds.

Runs ``python -m interp.cli demo --out DIR`` (a fresh run directory) as a child process under GNU
time, and writes one JSON (default ``bench/runs/demo_time.json``, which ``scripts/update_readme.py
--only demo_time`` renders into the README): wall-clock, user and system CPU seconds, peak resident
memory, the stage timings the demo records in its ``manifest.json``, and what the machine was doing
(cores, load average before the run): a measurement taken beside other jobs says so. Run it from
the repository root, after ``make install``, on a quiet machine:

    .venv/bin/python -m bench.demo_time                # ~3-5 min on 2 cores
    .venv/bin/python -m bench.demo_time --full         # the demo with the search comparison
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

#: GNU time's -v lines we keep, and their names in the JSON
FIELDS = {
    "Elapsed (wall clock) time (h:mm:ss or m:ss)": "wall_s",
    "User time (seconds)": "user_s",
    "System time (seconds)": "system_s",
    "Maximum resident set size (kbytes)": "peak_rss_kb",
    "Percent of CPU this job got": "cpu_percent",
}


def parse_time(text: str) -> dict[str, float]:
    """The fields of GNU ``time -v`` output (wall time as seconds)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        key, _, value = line.strip().rpartition(": ")
        if key in FIELDS:
            value = value.strip().rstrip("%")
            if FIELDS[key] == "wall_s":
                parts = [float(p) for p in value.split(":")]
                seconds = 0.0
                for p in parts:
                    seconds = seconds * 60 + p
                out["wall_s"] = round(seconds, 1)
            else:
                out[FIELDS[key]] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="time `interp demo --full` (with the search comparison)")
    parser.add_argument("--out", type=Path, default=Path("bench/runs/demo_time.json"), help="the JSON to write")
    parser.add_argument("--keep", type=Path, default=None, help="keep the demo's run directory here (default: a temporary one)")
    args = parser.parse_args(argv)
    time_bin = "/usr/bin/time"
    if not Path(time_bin).exists():
        print("GNU time is needed at /usr/bin/time (apt-get install time)", file=sys.stderr)
        return 2
    run_dir = args.keep or Path(tempfile.mkdtemp(prefix="interp-demo-time-")) / "demo"
    command = [sys.executable, "-m", "interp.cli", "demo", "--out", str(run_dir)] + (["--full"] if args.full else [])
    load_before = os.getloadavg()
    done = subprocess.run([time_bin, "-v", *command], capture_output=True, text=True)
    print(done.stdout[-3000:])
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return done.returncode
    measured = parse_time(done.stderr)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    result = {
        "bench": "demo_time", "command": " ".join(["interp", *command[3:]]), "full": args.full,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), **measured,
        "stages_s": manifest.get("timings_s", {}), "cores": os.cpu_count(), "load_before": [round(x, 2) for x in load_before],
        "machine": platform.processor() or platform.machine(),
        "torch_threads": manifest.get("torch_threads"), "git": _git_head(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    if args.keep is None:
        shutil.rmtree(run_dir.parent, ignore_errors=True)
    return 0


def _git_head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    raise SystemExit(main())
