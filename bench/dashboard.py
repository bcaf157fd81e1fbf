#!/usr/bin/env python3
"""Dashboard benchmark: how long `smart-rerun dashboard` takes to write the page from a full history,
and how big the page is. Standard library only; fills a SQLite history with the generated reports of
bench/history.py (1% flaky, 0.25% failed per run, a few branches and CI jobs) through `history import`.

  bench/dashboard.py [--bin target/release/smart-rerun] [--runs 1000] [--tests 2000] [--reps 3]

Target: writing the dashboard of 1,000 runs of 2,000 tests <= 2 s (wall time of the whole command), with
or without --branch.
Writes bench/results/dashboard.{json,md} (or --out STEM). With chromium on PATH it also loads the page
headless and reads how long it took to draw itself (its `data-ready-ms`), and reports the page's size.
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("bench_history", os.path.join(ROOT, "bench/history.py"))
bench_history = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_history)

BRANCHES = ["main", "main", "main", "release", "feature/login"]
JOBS = ["py3.11", "py3.12"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/smart-rerun"))
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--tests", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/dashboard"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit("no binary at %s: build it with `cargo build --release` or pass --bin" % args.bin)
    rng = random.Random(11)
    # Recent runs, so the default period (90 days) holds them all: one every 2 hours back from now.
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    start = now - datetime.timedelta(hours=args.runs + 1)
    tmp = tempfile.mkdtemp(prefix="sr-bench-dashboard-")
    load_before = os.getloadavg()
    try:
        db = os.path.join(tmp, "history.db")
        fill_started = time.perf_counter()
        batch = 50
        for first in range(0, args.runs, batch):
            paths = []
            for k in range(first, min(first + batch, args.runs)):
                doc = bench_history.report(k, args.tests, args.tests // 100, args.tests // 400, rng, start)
                doc["ci"] = {"platform": "github", "comment_key": JOBS[k % len(JOBS)]}
                p = os.path.join(tmp, "run-%04d.json" % k)
                bench_history.write(p, doc)
                paths.append(p)
            out = subprocess.run([args.bin, "history", "import", "--history", db, *paths], capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit("history import failed:\n%s%s" % (out.stdout, out.stderr))
            for p in paths:
                os.remove(p)
        # Imported reports have no branch: give the runs some, as CI runs would have.
        import sqlite3
        con = sqlite3.connect(db)
        con.execute("UPDATE runs SET branch = CASE id % 5 WHEN 3 THEN 'release' WHEN 4 THEN 'feature/login' ELSE 'main' END")
        con.commit()
        con.close()
        fill_seconds = time.perf_counter() - fill_started

        walls, sizes, said = [], [], ""
        site = os.path.join(tmp, "site")
        for _ in range(args.reps):
            started = time.perf_counter()
            out = subprocess.run([args.bin, "dashboard", "--history", db, "--out", site], capture_output=True, text=True)
            walls.append(time.perf_counter() - started)
            if out.returncode != 0:
                sys.exit("dashboard failed:\n%s%s" % (out.stdout, out.stderr))
            said = out.stdout.strip()
            sizes.append(os.path.getsize(os.path.join(site, "index.html")))
        # How long the page takes to draw itself in headless Chromium (the page's data-ready-ms).
        ready = []
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser:
            for _ in range(args.reps):
                dom = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox",
                                      "--user-data-dir=" + os.path.join(tmp, "profile"), "--dump-dom",
                                      "file://" + os.path.join(site, "index.html")],
                                     capture_output=True, text=True, timeout=120).stdout
                m = re.search(r'data-ready-ms="(\d+)"', dom)
                if m and 'data-errors=""' in dom:
                    ready.append(int(m.group(1)))
        branch_walls = []
        for _ in range(args.reps):
            branch_started = time.perf_counter()
            subprocess.run([args.bin, "dashboard", "--history", db, "--out", site, "--branch", "main"], check=True, capture_output=True)
            branch_walls.append(time.perf_counter() - branch_started)
        branch_wall = statistics.median(branch_walls)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()

    version = subprocess.run([args.bin, "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    median = statistics.median(walls)
    doc = {
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "binary": version, "commit": commit, "nproc": os.cpu_count(),
        "os": "%s %s" % (platform.system(), platform.release()),
        "load_before": load_before, "load_after": load_after,
        "results": {
            "runs": args.runs, "tests_per_run": args.tests, "fill_wall_seconds": fill_seconds,
            "dashboard_wall_seconds_median": median, "dashboard_wall_seconds_max": max(walls),
            "dashboard_branch_wall_seconds": branch_wall, "dashboard_branch_wall_seconds_max": max(branch_walls),
            "page_kib": sizes[-1] / 1024, "said": said,
            "page_ready_ms_median": statistics.median(ready) if ready else None,
        },
        "targets": [{"what": "dashboard of %d runs of %d tests" % (args.runs, args.tests),
                     "measured": median, "limit": 2.0, "met": median <= 2.0},
                    {"what": "dashboard --branch main of the same history",
                     "measured": branch_wall, "limit": 2.0, "met": branch_wall <= 2.0}],
    }
    with open(args.out + ".json", "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    md = [
        "# smart-rerun dashboard benchmark",
        "",
        "- When: %s; command: `bench/dashboard.py`" % doc["when"],
        "- %s at commit %s; %s CPUs, %s" % (version, commit, doc["nproc"], doc["os"]),
        "- Load average at start %s, at end %s" % (" ".join("%.2f" % x for x in load_before), " ".join("%.2f" % x for x in load_after)),
        "",
        "| what | median | detail |",
        "| --- | --- | --- |",
        "| `dashboard`, %d runs of %d tests (SQLite) | %.3f s | max %.3f s over %d reps; page %.0f KiB |"
        % (args.runs, args.tests, median, max(walls), len(walls), sizes[-1] / 1024),
        "| `dashboard --branch main` | %.3f s | max %.3f s over %d reps |" % (branch_wall, max(branch_walls), len(branch_walls)),
        "| the page drawn in headless Chromium (navigation to drawn) | %s | median of %d loads |"
        % ("%d ms" % statistics.median(ready) if ready else "not measured (no chromium)", len(ready)),
        "",
        "| target | measured | limit | met |",
        "| --- | --- | --- | --- |",
    ] + ["| %s | %.3f s | ≤ 2.0 s | %s |" % (t["what"], t["measured"], "yes" if t["met"] else "**no**") for t in doc["targets"]]
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
