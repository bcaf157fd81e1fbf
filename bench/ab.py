"""Interleaved A/B of smart-rerun builds against plain pytest, on one of bench/run.py's suites.

    target/venvs/latest/bin/python bench/ab.py --case passing --reps 8 \
        --binary old=/tmp/old/smart-rerun --binary new=target/release/smart-rerun

Each repetition runs plain pytest and every binary once, in an order that rotates, after one warm-up
repetition that is not counted; it prints the medians of wall time, CPU time of the process tree (wait4)
and round 1's time (spawn to pytest's last line, from SMART_RERUN_STATS). On a machine where single runs
vary by 10%, only interleaved runs of both builds tell a few percent apart. Standard library only.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: the suites and the environment)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="passing", help="a case of bench/run.py [passing]")
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--binary", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    binaries = {name: os.path.abspath(path) for name, path in (b.split("=", 1) for b in args.binary)}
    case = next((c for c in run.cases(False) if c["name"] == args.case), None)
    if case is None:
        parser.error("--case: %r is not one of %s" % (args.case, ", ".join(c["name"] for c in run.cases(False))))
    work = tempfile.mkdtemp(prefix="smart-rerun-ab-")
    try:
        suite = os.path.join(work, "suite")
        run.generate(case, suite)
        tools = ["plain"] + list(binaries)
        results = {tool: [] for tool in tools}
        for rep in range(args.reps + 1):
            shift = rep % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                state = os.path.join(work, "state")
                shutil.rmtree(state, ignore_errors=True)
                os.makedirs(state)
                env = run.clean_env()
                env[run.STATE_ENV] = state
                stats = os.path.join(work, "stats.json")
                env["SMART_RERUN_STATS"] = stats
                scratch = os.path.join(work, "scratch")
                os.makedirs(scratch, exist_ok=True)
                kind = "plain" if tool == "plain" else "smart-rerun"
                cmd = run.command(kind, case, args.python, binaries.get(tool), scratch)
                wall, cpu, _rss, _code = run.measure(cmd, suite, env, os.path.join(work, "output.log"))
                round1 = None
                if tool != "plain":
                    with open(stats) as fh:
                        round1 = json.load(fh)["rounds"][0]["seconds"]
                if rep:  # repetition 0 warms up
                    results[tool].append((wall, cpu, round1))
        print("%s, %d repetitions (medians)" % (case["title"], args.reps))
        base = statistics.median(r[0] for r in results["plain"])
        for tool in tools:
            rows = results[tool]
            wall = statistics.median(r[0] for r in rows)
            cpu = statistics.median(r[1] for r in rows)
            round1 = "-" if tool == "plain" else "%.3f" % statistics.median(r[2] for r in rows)
            print(
                "%-10s wall %.3f s (%.3f x plain)  CPU %.3f s  round 1 %s s  [%s]"
                % (tool, wall, wall / base, cpu, round1, " ".join("%.2f" % r[0] for r in rows))
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
