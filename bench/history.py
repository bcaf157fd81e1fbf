#!/usr/bin/env python3
"""History store benchmark: how long recording a large run takes, and how long the lookups a report
needs take in a full database. Standard library only; drives the real binary with generated JSON
reports (the format of `--report`), so it measures what `smart-rerun run --history` does.

  bench/history.py [--bin target/release/smart-rerun] [--runs 1000] [--tests 2000] [--large 100000]

Targets (SQLite): recording a 100,000-test run <= 1 s; the lookups of a report <= 100 ms with 1,000 runs
of 2,000 tests in the database. Writes bench/results/history.{json,md} (or --out STEM).

What is timed:
- recording: `history import` prints the time of the recording transaction itself (the report's JSON
  parsing left out); the wall time of the whole command is shown next to it.
- lookups: `history explain REPORT.json` (open the database, check its schema, look up every failed or
  flaky test of the report), wall time of the whole command, so an upper bound; the same command on an
  empty database is shown as the floor (process start, reading the report).
"""

import argparse
import datetime
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


def report(k, n_tests, flaky, broken, rng, start):
    """A JSON report of run k: n_tests tests, `flaky` flaky ones and `broken` failed ones chosen by rng."""
    ids = ["tests/test_m%03d.py::test_%05d" % (i % 100, i) for i in range(n_tests)]
    chosen = rng.sample(range(n_tests), flaky + broken)
    flaky_set, broken_set = set(chosen[:flaky]), set(chosen[flaky:])
    started = start + datetime.timedelta(hours=k)
    fmt = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def failed_attempt(n, kind):
        return {
            "number": n, "round": n, "outcome": "failed", "phase": "call", "duration_seconds": 0.01,
            "exception": {"type": "builtins.%s" % kind, "mro": ["builtins.%s" % kind, "builtins.Exception"],
                          "message": "connection reset after %d ms" % rng.randint(1, 999)},
            "fingerprint": "%016x" % len(kind),
        }

    tests = []
    for i, nodeid in enumerate(ids):
        t = {"nodeid": nodeid, "outcome": "passed", "file": nodeid.split("::")[0], "line": 1 + i % 50,
             "duration_seconds": 0.001}
        if i in flaky_set:
            t["outcome"] = "flaky"
            t["attempts"] = [failed_attempt(1, "ConnectionError"),
                             {"number": 2, "round": 2, "outcome": "passed", "duration_seconds": 0.01}]
        elif i in broken_set:
            t["outcome"] = "failed"
            t["attempts"] = [failed_attempt(1, "AssertionError"), failed_attempt(2, "AssertionError")]
        tests.append(t)
    counts = {o: sum(1 for t in tests if t["outcome"] == o) for o in ("passed", "failed", "flaky")}
    return {
        "schema_version": 2,
        "tool": {"name": "smart-rerun", "version": "bench"},
        "run": {
            "command": ["python", "-m", "pytest"], "cwd": "/bench/%d" % k, "python_version": "3.11",
            "pytest_version": "9.2.0", "python_executable": "python", "rootdir": "/bench",
            "started_at": fmt(started), "finished_at": fmt(started + datetime.timedelta(seconds=60)),
            "duration_seconds": 60.0, "exit_code": 1 if broken else 0, "exit_reason": "",
            "interrupted": False,
            "policy": {"enabled": True, "max_attempts": 2, "delay_seconds": 0.0, "backoff": "none",
                       "max_delay_seconds": None, "errors": []},
            "rounds": [],
        },
        "summary": {"total": n_tests, "passed": counts["passed"], "failed": counts["failed"],
                    "flaky": counts["flaky"], "skipped": 0, "xfailed": 0, "xpassed": 0, "errors": 0,
                    "not_run": 0, "collection_errors": 0, "reruns": flaky + broken, "rerun_seconds": 1.0},
        "tests": tests,
    }


def write(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f)


def smart(binary, *args):
    started = time.perf_counter()
    out = subprocess.run([binary, "history", *args], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit("smart-rerun history %s failed (%d):\n%s%s" % (" ".join(args[:2]), out.returncode, out.stdout, out.stderr))
    return out.stdout, wall


RECORDED = re.compile(r"recorded .* \((\d+) tests? in ([0-9.]+) s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/smart-rerun"))
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--tests", type=int, default=2000)
    ap.add_argument("--large", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/history"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit("no binary at %s: build it with `cargo build --release` or pass --bin" % args.bin)
    rng = random.Random(7)
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    load_before = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="sr-bench-history-")
    results = {}
    try:
        # 1. Recording a large run, into an empty database and into one that already holds a run of it.
        large_path = os.path.join(tmp, "large.json")
        rec = []
        for rep in range(args.reps):
            db = os.path.join(tmp, "large-%d.db" % rep)
            doc = report(rep, args.large, args.large // 100, args.large // 400, rng, start)
            write(large_path, doc)
            out, wall = smart(args.bin, "import", "--history", db, large_path)
            m = RECORDED.search(out)
            rec.append((float(m.group(2)), wall, int(m.group(1))))
            os.remove(db)
        results["record_large"] = {
            "tests": args.large, "reps": args.reps,
            "record_seconds_median": statistics.median(r[0] for r in rec),
            "record_seconds_max": max(r[0] for r in rec),
            "import_wall_seconds_median": statistics.median(r[1] for r in rec),
        }
        os.remove(large_path)

        # 2. A database of `runs` runs of `tests` tests (1% flaky, 0.25% failed each), imported in batches.
        db = os.path.join(tmp, "full.db")
        fill_started = time.perf_counter()
        batch = 50
        fills = []
        for first in range(0, args.runs, batch):
            paths = []
            for k in range(first, min(first + batch, args.runs)):
                p = os.path.join(tmp, "run-%04d.json" % k)
                write(p, report(k, args.tests, args.tests // 100, args.tests // 400, rng, start))
                paths.append(p)
            out, _ = smart(args.bin, "import", "--history", db, *paths)
            fills.extend(float(m.group(2)) for m in RECORDED.finditer(out))
            for p in paths:
                os.remove(p)
        fill_seconds = time.perf_counter() - fill_started
        results["fill"] = {
            "runs": args.runs, "tests_per_run": args.tests, "wall_seconds": fill_seconds,
            "record_seconds_median": statistics.median(fills),
            "db_mib": os.path.getsize(db) / 2**20,
        }

        # 3. The lookups of one more run's report: typical (1% flaky, 0.25% failed) and at the lookup limit.
        empty = os.path.join(tmp, "empty.db")
        lookups = {}
        many = min(500, args.tests // 2)
        cases = [("typical", args.tests // 100, args.tests // 400),
                 ("%d failing or flaky" % many, many * 4 // 5, many - many * 4 // 5)]
        for label, flaky, broken in cases:
            p = os.path.join(tmp, "now-%s.json" % label.replace(" ", "-"))
            write(p, report(args.runs + 1, args.tests, flaky, broken, rng, start))
            walls = []
            for _ in range(args.reps):
                out, wall = smart(args.bin, "explain", p, "--history", db, "--format", "json")
                walls.append(wall)
            explained = json.loads(out)
            # The floor: the same command on a database with one unrelated run (process start, opening
            # the database, parsing the report; lookups that find nothing).
            if not os.path.exists(empty):
                seed = report(10**6, 1, 0, 0, rng, start)
                seed["tests"][0]["nodeid"] = "elsewhere.py::test_seed"
                write(os.path.join(tmp, "seed.json"), seed)
                smart(args.bin, "import", "--history", empty, os.path.join(tmp, "seed.json"))
            floors = [smart(args.bin, "explain", p, "--history", empty, "--format", "json")[1] for _ in range(args.reps)]
            lookups[label] = {
                "tests_looked_up": len(explained),
                "verdicts": sorted({e["history"]["verdict"] for e in explained}),
                "explain_wall_seconds_median": statistics.median(walls),
                "empty_db_wall_seconds_median": statistics.median(floors),
            }
        results["lookups"] = lookups
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()

    version = subprocess.run([args.bin, "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    doc = {
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "binary": version, "commit": commit, "nproc": os.cpu_count(),
        "os": "%s %s" % (platform.system(), platform.release()),
        "load_before": load_before, "load_after": load_after,
        "results": results,
    }
    rl, fill, lk = results["record_large"], results["fill"], results["lookups"]
    typical = lk["typical"]
    targets = [
        ("recording a %d-test run (SQLite)" % rl["tests"], rl["record_seconds_median"], 1.0, "s"),
        ("lookups of a report, %d runs of %d tests in the database (wall time of `history explain`)"
         % (fill["runs"], fill["tests_per_run"]), typical["explain_wall_seconds_median"], 0.1, "s"),
    ]
    doc["targets"] = [{"what": w, "measured": m, "limit": l, "met": m <= l} for w, m, l, _ in targets]
    with open(args.out + ".json", "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    md = [
        "# smart-rerun history benchmark",
        "",
        "- When: %s; command: `bench/history.py`" % doc["when"],
        "- %s at commit %s; %s CPUs, %s" % (version, commit, doc["nproc"], doc["os"]),
        "- Load average at start %s, at end %s" % (" ".join("%.2f" % x for x in load_before), " ".join("%.2f" % x for x in load_after)),
        "",
        "| what | median | detail |",
        "| --- | --- | --- |",
        "| record a %d-test run (transaction) | %.3f s | max %.3f s over %d reps; whole `history import` %.3f s |"
        % (rl["tests"], rl["record_seconds_median"], rl["record_seconds_max"], rl["reps"], rl["import_wall_seconds_median"]),
        "| fill: %d runs of %d tests | %.3f s per run | %.0f s in all, database %.0f MiB |"
        % (fill["runs"], fill["tests_per_run"], fill["record_seconds_median"], fill["wall_seconds"], fill["db_mib"]),
    ]
    for label, l in lk.items():
        md.append("| `history explain`, %s report (%d tests looked up) | %.3f s | %.3f s on an empty database; verdicts %s |"
                  % (label, l["tests_looked_up"], l["explain_wall_seconds_median"], l["empty_db_wall_seconds_median"], ", ".join(l["verdicts"])))
    md += ["", "| target | measured | limit | met |", "| --- | --- | --- | --- |"]
    for t in doc["targets"]:
        md.append("| %s | %.3f s | ≤ %.1f s | %s |" % (t["what"], t["measured"], t["limit"], "yes" if t["met"] else "**no**"))
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
