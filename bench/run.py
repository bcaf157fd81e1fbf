#!/usr/bin/env python3
"""smart-rerun benchmark harness. Run it through `scripts/bench`; docs/benchmarks.md explains it.

Generates synthetic pytest suites into a temporary directory and measures, in the same run, wall time and
peak RSS of three tools on each suite:

  plain          python -m pytest                                     (no reruns; the baseline)
  rerunfailures  python -m pytest --reruns K [--reruns-delay D]        (in-process reruns)
  smart-rerun    smart-rerun run --max K+1 --delay D -- python -m pytest

Every measured run is repeated R times; the tools are interleaved run by run (tool order rotated each
repetition) and medians are reported, with ratios against the baselines from the same run. Results go to
bench/results/latest.{json,md} (full mode) or bench/results/quick.{json,md} (--quick).

Standard library only. Everything is deterministic apart from timing: the flaky and broken tests are chosen
with a fixed seed, and the per-test counter files are reset before every measured run.

Peak RSS: `os.wait4` returns the child's rusage, whose ru_maxrss on Linux is the largest RSS of any single
process in the waited-for tree (so for smart-rerun it is usually a pytest round). smart-rerun's own peak RSS
comes from the binary itself, through the developer-only SMART_RERUN_STATS=PATH file (src/devstats.rs).
"""

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ("plain", "rerunfailures", "smart-rerun", "smart-rerun-cold", "pytest-plugin", "pytest-smart-rerun")
# smart-rerun-cold is smart-rerun with `--prestart false --fork false` (each round starts its own pytest),
# for measuring what starting rerun rounds early, or warm, pays; pytest-plugin is `pytest --smart-rerun ...` through the plugin in
# the wheel (python/pytest_smart_rerun, loaded with -p from the source tree, handing over to --binary),
# for measuring what the hand-over costs; pytest-smart-rerun is the Python plugin from PyPI that smart-rerun
# reproduces, in-process like rerunfailures, run from its own venv (--peer-python: its ini keys are
# smart-rerun's, bench/peer-requirements.txt pins it). Run them with --tools.
DEFAULT_TOOLS = TOOLS[:3]
SMART = ("smart-rerun", "smart-rerun-cold", "pytest-plugin")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from suite import SEED, STATE_ENV, generate  # noqa: E402  (bench/suite.py; ab.py and overhead.py use them through here)


# -- cases ------------------------------------------------------------------------------------------------


def cases(quick):
    """The benchmark cases. Quick mode shrinks them for smoke runs; the shape and targets stay the same."""
    n2000 = 200 if quick else 2000
    return [
        {
            "name": "passing",
            "title": "all passing, %d tests" % n2000,
            "tests": n2000,
            "modules": 20,
            "flaky": 0,
            "broken": 0,
            "reruns": 2,
            "delay": 0.0,
            "reps": None,
        },
        {
            "name": "flaky",
            "title": "%d tests, 1%% flaky, 0.25%% broken, delay 0" % n2000,
            "tests": n2000,
            "modules": 20,
            "flaky": max(1, n2000 // 100),
            "broken": max(1, n2000 // 400),
            "reruns": 2,
            "delay": 0.0,
            "reps": None,
        },
        {
            "name": "flaky-delay",
            "title": "%d tests, 1%% flaky, 0.25%% broken, delay 0.2 s" % n2000,
            "tests": n2000,
            "modules": 20,
            "flaky": max(1, n2000 // 100),
            "broken": max(1, n2000 // 400),
            "reruns": 2,
            "delay": 0.2,
            "reps": None,
        },
        {
            "name": "import-heavy",
            "title": "%d modules costing %.2f s each to import, %d tests, %d flaky, %d broken"
            % (40 if not quick else 10, 0.1 if not quick else 0.05, 400 if not quick else 100, 4 if not quick else 2, 1),
            "tests": 400 if not quick else 100,
            "modules": 40 if not quick else 10,
            "import_cost": 0.1 if not quick else 0.05,
            "flaky": 4 if not quick else 2,
            "broken": 1,
            "reruns": 2,
            "delay": 0.0,
            "reps": None,
        },
        {
            # A conftest whose import costs 1 s (a busy loop, like a Django set-up): what a rerun round
            # that starts a fresh pytest pays again, and one forked from the first round's snapshot does not.
            "name": "conftest-heavy",
            "title": "a conftest costing 1 s at import, %d tests in %d modules, %d flaky"
            % (400 if not quick else 100, 40 if not quick else 10, 4 if not quick else 2),
            "tests": 400 if not quick else 100,
            "modules": 40 if not quick else 10,
            "conftest_cost": 1.0,
            "flaky": 4 if not quick else 2,
            "broken": 0,
            "reruns": 2,
            "delay": 0.0,
            "reps": None,
        },
        {
            # Every failure drawn with --showlocals -ra (the suite's pytest.ini asks for it), as packaging's
            # own suite does: what a first round pays for drawing failures that a rerun then replaces.
            "name": "showlocals",
            "title": "%d tests, 5%% flaky, 0.25%% broken, --showlocals -ra" % n2000,
            "tests": n2000,
            "modules": 20,
            "flaky": max(1, n2000 // 20),
            "broken": max(1, n2000 // 400),
            "showlocals": True,
            "reruns": 2,
            "delay": 0.0,
            "reps": None,
        },
        {
            "name": "large",
            "title": "%d tests, 1%% flaky, 0.25%% broken" % (100000 if not quick else 5000),
            "tests": 100000 if not quick else 5000,
            "modules": 200 if not quick else 20,
            "flaky": 1000 if not quick else 50,
            "broken": 250 if not quick else 12,
            "reruns": 2,
            "delay": 0.0,
            # Every tool writes JUnit XML, as a CI job would: smart-rerun's own peak RSS includes writing it.
            "junit": True,
            # 100,000 tests take minutes per run: one repetition unless --large-reps says otherwise.
            "reps": 1,
        },
    ]


# -- running ----------------------------------------------------------------------------------------------


def clean_env():
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("PYTEST_", "SMART_RERUN_")) or key in ("PYTHONPATH", "COV_CORE_SOURCE"):
            del env[key]
    # Bytecode caching as Python does by default: the warm-up writes the rewritten test modules' .pyc
    # files, and every measured run reads them. Inherited from a shell (or CI image) that sets it, it
    # would make every pytest process rewrite and compile each module it imports again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONHASHSEED"] = "0"
    return env


def command(tool, case, python, binary, scratch, peer_python=None, off=None):
    """The tool's command line. ``off``: {"main": [...], "peer": [...]}, pytest plugins (entry-point names)
    that only one of the two venvs has, turned off with ``-p no:NAME`` so every tool's pytest loads the same."""
    off = off or {}
    if tool == "pytest-smart-rerun":
        cmd = [peer_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--smart-rerun"]
        cmd += [a for name in off.get("peer", ()) for a in ("-p", "no:" + name)]
        return cmd + ["--smart-rerun-max=%d" % (case["reruns"] + 1), "--smart-rerun-delay=%s" % case["delay"]]
    pytest = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    pytest += [a for name in off.get("main", ()) for a in ("-p", "no:" + name)]
    if case.get("junit") and scratch:
        # smart-rerun takes the option over and writes the merged report itself.
        pytest.append("--junit-xml=" + os.path.join(scratch, "junit.xml"))
    if tool == "plain":
        return pytest + ["-p", "no:rerunfailures"]
    if tool == "pytest-plugin":
        return pytest + [
            "-p",
            "no:rerunfailures",
            "-p",
            "pytest_smart_rerun.plugin",
            "--smart-rerun",
            "--smart-rerun-max=%d" % (case["reruns"] + 1),
            "--smart-rerun-delay=%s" % case["delay"],
            "--smart-rerun-report=" + os.path.join(scratch, "report.json"),
        ]
    if tool == "rerunfailures":
        cmd = pytest + ["--reruns", str(case["reruns"])]
        if case["delay"]:
            cmd += ["--reruns-delay", str(case["delay"])]
        return cmd
    return [
        binary,
        "run",
        "--color",
        "never",
        "--max",
        str(case["reruns"] + 1),
        "--delay",
        str(case["delay"]),
        "--report",
        os.path.join(scratch, "report.json"),
    ] + (["--prestart", "false", "--fork", "false"] if tool == "smart-rerun-cold" else []) + ["--"] + pytest + ["-p", "no:rerunfailures"]


def measure(cmd, cwd, env, log_path):
    """Runs cmd; returns (wall s, CPU s, peak RSS KiB of the tree's largest process, exit code)."""
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss_kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss // 1024
    # User + system CPU of the whole tree (smart-rerun waits for its pytest rounds, so they count): less
    # sensitive than wall time to other load on the machine, though not immune to it.
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, rss_kib, proc.returncode


def read_counts(state):
    counts = {}
    for entry in os.listdir(state):
        if entry.startswith("count-"):
            with open(os.path.join(state, entry)) as fh:
                counts[entry[len("count-") :]] = int(fh.read() or 0)
    return counts


def read_imports(state):
    """{round label: [module, ...]} from the import marker lines; plain pytest and rerunfailures are '-'."""
    rounds = {}
    path = os.path.join(state, "imports.log")
    if os.path.exists(path):
        with open(path) as fh:
            for line in fh:
                module, label, _pid = line.split()
                rounds.setdefault(label, []).append(module)
    return rounds


PEER_PLUGIN = "smart-rerun"  # pytest-smart-rerun's own entry point: the peer tool itself


def pytest_plugins(python):
    """The names of the pytest11 entry points (the plugins pytest loads at start-up) of ``python``'s venv."""
    probe = "from importlib.metadata import entry_points as e; print(' '.join(sorted(p.name for p in e(group='pytest11'))))"
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def plugins_only_one_has(python, peer_python):
    """{"main": [...], "peer": [...]}: the start-up plugins only the benchmark's venv, or only the peer's,
    has. Each tool turns off those of its venv, so that every pytest measured loads the same plugins (the
    benchmark's venv carries the test suite's packages: the MCP SDK brings anyio's plugin, whose per-test
    hooks cost plain pytest about 10% here and an in-process rerun plugin more)."""
    main, peer = pytest_plugins(python), pytest_plugins(peer_python) - {PEER_PLUGIN}
    return {"main": sorted(main - peer), "peer": sorted(peer - main)}


def run_once(tool, case, ctx, suite, rep):
    scratch = os.path.join(ctx["work"], case["name"], "%s-%d" % (tool, rep))
    state = os.path.join(scratch, "state")
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(state)
    env = clean_env()
    env[STATE_ENV] = state
    stats_path = os.path.join(scratch, "stats.json")
    if tool in SMART:
        env["SMART_RERUN_STATS"] = stats_path
    if tool == "pytest-plugin":
        env["SMART_RERUN_BIN"] = ctx["binary"]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.join(ROOT, "python"), env.get("PYTHONPATH")]))
    cmd = command(tool, case, ctx["python"], ctx["binary"], scratch, ctx["peer_python"], ctx["off"])
    wall, cpu, rss, code = measure(cmd, suite, env, os.path.join(scratch, "output.log"))
    result = {"wall": wall, "cpu": cpu, "rss_kib": rss, "exit": code, "counts": read_counts(state), "imports": read_imports(state)}
    if tool in SMART:
        with open(stats_path) as fh:
            result["stats"] = json.load(fh)
        report_path = os.path.join(scratch, "report.json")
        result["report_bytes"] = os.path.getsize(report_path)
        with open(report_path) as fh:
            report = json.load(fh)
        result["summary"] = report["summary"]
        result["rounds"] = report["run"]["rounds"]
        # The files each rerun round needed: those of the tests that had an attempt in it.
        needed = {}
        for test in report["tests"]:
            for attempt in test.get("attempts") or ():
                if attempt["round"] > 1 and test.get("file"):
                    needed.setdefault(str(attempt["round"]), set()).add(os.path.splitext(os.path.basename(test["file"]))[0])
        result["needed_modules"] = {k: sorted(v) for k, v in needed.items()}
    result["command"] = cmd
    result["log"] = os.path.join(scratch, "output.log")
    return result


def check(tool, case, specials, result):
    """The tools must behave as the suite dictates, or the timings mean nothing."""
    problems = []
    counts = result["counts"]
    k = case["reruns"]
    fail_times = case.get("fail_times", 1)
    expect_exit = 1 if (case["broken"] or (tool == "plain" and case["flaky"])) else 0
    if result["exit"] != expect_exit:
        problems.append("exit %s, expected %s" % (result["exit"], expect_exit))
    for name, (_module, kind) in specials.items():
        got = counts.get(name, 0)
        if kind == "flaky":
            want = 1 if tool == "plain" else min(fail_times + 1, k + 1)
            if got != want:
                problems.append("%s ran %d times, expected %d" % (name, got, want))
        elif tool == "plain" and got != 1:
            problems.append("%s ran %d times, expected 1" % (name, got))
        elif tool != "plain" and not 1 <= got <= k + 1:
            problems.append("%s ran %d times, expected 1..%d" % (name, got, k + 1))
    if tool in SMART:
        summary = result["summary"]
        if summary["total"] != case["tests"] or summary["flaky"] != case["flaky"] or summary["failed"] != case["broken"]:
            problems.append(
                "report summary total=%s flaky=%s failed=%s, expected %s/%s/%s"
                % (summary["total"], summary["flaky"], summary["failed"], case["tests"], case["flaky"], case["broken"])
            )
    if problems:
        raise SystemExit(
            "bench: %s on case %s misbehaved (see %s):\n  %s" % (tool, case["name"], result["log"], "\n  ".join(problems[:10]))
        )


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run_case(case, ctx):
    reps = ctx["reps"]
    if case["reps"] is not None:  # the 100,000-test case
        reps = ctx["large_reps"] or case["reps"]
    suite = os.path.join(ctx["work"], case["name"], "suite")
    specials = generate(case, suite)
    log("case %s: %s; %d repetition(s)" % (case["name"], case["title"], reps))
    load_before = os.getloadavg()
    # Warm-up, not measured: compiles the suite's bytecode (pytest's assertion rewriting caches it), fills
    # the page cache, and checks that every tool behaves. For the 100,000-test case, where one run takes
    # minutes, only `pytest --collect-only`, which imports (and caches) every module without running tests.
    if case["reps"] is not None or not ctx["warmup"]:
        env = clean_env()
        env[STATE_ENV] = os.path.join(ctx["work"], case["name"], "warmup-state")
        cmd = command("plain", case, ctx["python"], ctx["binary"], None) + ["--collect-only"]
        measure(cmd, suite, env, os.path.join(ctx["work"], case["name"], "warmup.log"))
    else:
        for tool in ctx["tools"]:
            result = run_once(tool, case, ctx, suite, -1)
            check(tool, case, specials, result)
    tools = ctx["tools"]
    runs = {tool: [] for tool in tools}
    for rep in range(reps):
        order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
        for tool in order:
            result = run_once(tool, case, ctx, suite, rep)
            check(tool, case, specials, result)
            runs[tool].append(result)
            log(
                "  rep %d %-13s %7.2f s wall %7.2f s CPU %7.1f MiB  exit %d"
                % (rep + 1, tool, result["wall"], result["cpu"], result["rss_kib"] / 1024, result["exit"])
            )
    load_after = os.getloadavg()
    return summarise(case, specials, runs, reps, load_before, load_after)


def summarise(case, specials, runs, reps, load_before, load_after):
    out = {
        "case": case["name"],
        "title": case["title"],
        "params": {k: v for k, v in case.items() if k not in ("name", "title")},
        "reps": reps,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "tools": {},
    }
    out["params"]["reps"] = reps
    for tool in runs:
        rs = runs[tool]
        entry = {
            "wall_seconds": [round(r["wall"], 4) for r in rs],
            "wall_median": round(median([r["wall"] for r in rs]), 4),
            "wall_min": round(min(r["wall"] for r in rs), 4),
            "cpu_seconds": [round(r["cpu"], 4) for r in rs],
            "cpu_median": round(median([r["cpu"] for r in rs]), 4),
            "rss_kib": [r["rss_kib"] for r in rs],
            "rss_median_kib": median([r["rss_kib"] for r in rs]),
            "exit": rs[-1]["exit"],
            "command": rs[-1]["command"],
        }
        broken = [name for name, (_m, kind) in specials.items() if kind == "broken"]
        flaky = [name for name, (_m, kind) in specials.items() if kind == "flaky"]
        last = rs[-1]["counts"]
        if broken:
            entry["broken_executions_per_test"] = max(last.get(n, 0) for n in broken)
        if flaky:
            entry["flaky_executions_per_test"] = max(last.get(n, 0) for n in flaky)
        entry["imports"] = {label: len(mods) for label, mods in sorted(rs[-1]["imports"].items())}
        if tool in SMART:
            stats = [r["stats"] for r in rs]
            entry["own_rss_kib"] = [s["max_rss_kib"] for s in stats]
            entry["own_rss_median_kib"] = median(entry["own_rss_kib"])
            entry["report_write_seconds"] = [s["report_write_seconds"] for s in stats]
            entry["report_write_median"] = median(entry["report_write_seconds"])
            entry["summary_seconds_median"] = median([s["summary_seconds"] for s in stats])
            own_cpu = [s.get("own_cpu_seconds") for s in stats]
            entry["own_cpu_median"] = median(own_cpu) if None not in own_cpu else None
            junit = [s.get("junit_write_seconds") for s in stats]
            entry["junit_write_median"] = median(junit) if None not in junit else None
            entry["report_bytes"] = rs[-1]["report_bytes"]
            entry["run_seconds_median"] = median([s["run_seconds"] for s in stats])
            # Time smart-rerun spent outside its pytest processes: reading events, planning, delay waits,
            # temp files; summary and report writing are measured separately above.
            entry["between_rounds_seconds_median"] = median(
                [s["run_seconds"] - sum(r["seconds"] for r in s["rounds"]) for s in stats]
            )
            rounds = []
            for i, r in enumerate(rs[-1]["stats"]["rounds"]):
                rounds.append(
                    {
                        "number": r["number"],
                        "kind": r["kind"],
                        "selected": r["selected"],
                        "seconds_median": round(median([s["rounds"][i]["seconds"] for s in stats if len(s["rounds"]) > i]), 4),
                        "imports": len(rs[-1]["imports"].get(str(r["number"]), [])),
                        "needed_modules": len(rs[-1]["needed_modules"].get(str(r["number"]), [])),
                        "extra_imports": sorted(
                            set(rs[-1]["imports"].get(str(r["number"]), []))
                            - set(rs[-1]["needed_modules"].get(str(r["number"]), []))
                        )
                        if r["number"] > 1
                        else [],
                    }
                )
            entry["rounds"] = rounds
        out["tools"][tool] = entry
    t = out["tools"]

    def ratio(a, b, key):
        if a in t and b in t:
            return round(t[a][key] / t[b][key], 3)
        return None  # a tool left out with --tools

    out["ratios"] = {
        "smart_vs_plain": ratio("smart-rerun", "plain", "wall_median"),
        "smart_vs_rerunfailures": ratio("smart-rerun", "rerunfailures", "wall_median"),
        "rerunfailures_vs_plain": ratio("rerunfailures", "plain", "wall_median"),
        # What a rerunning tool that cost nothing beyond running the suite once would score against
        # rerunfailures: a floor for smart/rf, since round 1 runs the whole suite in one pytest as plain does.
        "plain_vs_rerunfailures": ratio("plain", "rerunfailures", "wall_median"),
        "cpu_smart_vs_plain": ratio("smart-rerun", "plain", "cpu_median"),
        "cpu_smart_vs_rerunfailures": ratio("smart-rerun", "rerunfailures", "cpu_median"),
        # Best run against best run: less sensitive to other load than the medians, for a second look.
        "min_smart_vs_plain": ratio("smart-rerun", "plain", "wall_min"),
        "min_smart_vs_rerunfailures": ratio("smart-rerun", "rerunfailures", "wall_min"),
        # What starting rerun rounds early pays (with --tools ...,smart-rerun-cold).
        "smart_vs_cold": ratio("smart-rerun", "smart-rerun-cold", "wall_median"),
        "cold_vs_rerunfailures": ratio("smart-rerun-cold", "rerunfailures", "wall_median"),
        # What `pytest --smart-rerun` pays over `smart-rerun run` (with --tools ...,pytest-plugin).
        "plugin_vs_smart": ratio("pytest-plugin", "smart-rerun", "wall_median"),
        # Against the Python plugin smart-rerun reproduces (with --tools ...,pytest-smart-rerun).
        "smart_vs_peer": ratio("smart-rerun", "pytest-smart-rerun", "wall_median"),
        "peer_vs_rerunfailures": ratio("pytest-smart-rerun", "rerunfailures", "wall_median"),
        "plugin_minus_smart_seconds": (
            round(t["pytest-plugin"]["wall_median"] - t["smart-rerun"]["wall_median"], 3)
            if "pytest-plugin" in t and "smart-rerun" in t
            else None
        ),
    }
    out["targets"] = targets(case, out)
    return out


def target(name, value, limit, unit=""):
    # value None: not measured in this run (a tool left out with --tools).
    return {"target": name, "value": value, "limit": limit, "unit": unit, "met": None if value is None else value <= limit}


def targets(case, out):
    t = out["tools"]
    smart = t.get("smart-rerun")
    found = []
    if smart is None:
        return found
    name = case["name"]
    if name == "passing":
        found.append(target("smart-rerun / plain pytest wall time", out["ratios"]["smart_vs_plain"], 1.03, "x"))
    if name == "flaky":
        found.append(target("smart-rerun / rerunfailures wall time", out["ratios"]["smart_vs_rerunfailures"], 0.9, "x"))
        if "pytest-smart-rerun" in t:
            found.append(target("smart-rerun / pytest-smart-rerun wall time", out["ratios"]["smart_vs_peer"], 1.0, "x"))
    if name == "flaky-delay":
        found.append(target("smart-rerun / rerunfailures wall time", out["ratios"]["smart_vs_rerunfailures"], 0.3, "x"))
    if name == "showlocals":
        found.append(target("smart-rerun / rerunfailures wall time", out["ratios"]["smart_vs_rerunfailures"], 1.15, "x"))
    if case["broken"]:
        found.append(target("executions of a broken test by smart-rerun", smart["broken_executions_per_test"], 2, ""))
    if name == "large":
        junit = " (with JUnit XML)" if case.get("junit") else ""
        found.append(target("smart-rerun's own peak RSS" + junit, round(smart["own_rss_median_kib"] / 1024, 1), 60, "MiB"))
        found.append(target("smart-rerun's JSON report write", round(smart["report_write_median"], 3), 1.0, "s"))
        if smart.get("junit_write_median") is not None:
            found.append(target("smart-rerun's JUnit XML write", round(smart["junit_write_median"], 3), 1.0, "s"))
    if name == "conftest-heavy":
        found.append(target("smart-rerun / rerunfailures wall time", out["ratios"]["smart_vs_rerunfailures"], 1.0, "x"))
        reruns = [r["seconds_median"] for r in smart["rounds"] if r["number"] > 1]
        found.append(target("a rerun round's wall time (its tests take ~0 s)", max(reruns) if reruns else None, 0.1, "s"))
    if name == "import-heavy":
        extra = sum(len(r["extra_imports"]) for r in smart["rounds"])
        found.append(target("modules a rerun round imports beyond those it needs", extra, 0, ""))
    return found


# -- reporting --------------------------------------------------------------------------------------------


def machine(ctx):
    def first_line(cmd, cwd=None):
        try:
            return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
        except Exception as err:  # a missing tool is reported, not fatal
            return "unavailable (%s)" % err

    cpu = "unknown"
    mem = None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    probe = (
        "import sys, pytest; from importlib.metadata import version as v; "
        "print('%d.%d.%d' % sys.version_info[:3], pytest.__version__, v('pytest-rerunfailures'), v('pytest-xdist'), v('pytest-cov'))"
    )
    py, pt, rf, xd, cov = first_line([ctx["python"], "-c", probe]).split()
    commit = first_line(["git", "rev-parse", "HEAD"], cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": mem,
        "os": "%s %s" % (platform.system(), platform.release()),
        "python": py,
        "pytest": pt,
        "pytest_rerunfailures": rf,
        "pytest_xdist": xd,
        "pytest_cov": cov,
        "smart_rerun_commit": commit,
        "smart_rerun_tree_modified": bool(dirty),
        "smart_rerun_version": first_line([ctx["binary"], "--version"]),
        # scripts/bench builds the binary right before the run; when run.py is run directly, the binary may
        # be older than the commit above.
        "smart_rerun_binary_built": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(os.path.getmtime(ctx["binary"]))),
        "uptime": first_line(["uptime"]),
    }


def fmt_s(x):
    return "-" if x is None else "%.2f" % x


def fmt_ratio(x):
    return "-" if x is None else "%.3f" % x


def fmt_mib(kib):
    return "-" if kib is None else "%.0f" % (kib / 1024)


def markdown(results):
    m = results["machine"]
    lines = [
        "# smart-rerun benchmark results (%s mode)" % results["mode"],
        "",
        "- When: %s; command: `%s`" % (results["started"], results["command"]),
        "- Machine: %s CPUs (%s usable), %s, %s GiB RAM, %s" % (m["nproc"], m["cpus_usable"], m["cpu_model"], m["memory_gib"], m["os"]),
        "- Python %s, pytest %s, pytest-rerunfailures %s, pytest-xdist %s, pytest-cov %s"
        % (m["python"], m["pytest"], m["pytest_rerunfailures"], m["pytest_xdist"], m["pytest_cov"]),
        "- %s, HEAD %s%s, binary built %s"
        % (
            m["smart_rerun_version"],
            m["smart_rerun_commit"][:12],
            " (working tree modified)" if m["smart_rerun_tree_modified"] else "",
            m.get("smart_rerun_binary_built", "?"),
        ),
        "- Load at start: `%s`; at end: `%s`" % (m["uptime"], results["uptime_end"]),
        "- Start-up plugins turned off so every tool loads the same: %s"
        % ("; ".join("%s venv: %s" % (k, ", ".join(v)) for k, v in sorted(results.get("plugins_off", {}).items()) if v) or "none"),
        "",
        "Wall times are medians of the repetitions (tools interleaved); RSS is the peak of the largest single",
        "process (`wait4` ru_maxrss: for smart-rerun usually a pytest round); *own RSS* is smart-rerun's alone.",
        "",
        "*plain/rf* is what a rerunning tool costing nothing beyond one plain pytest run would score against",
        "rerunfailures: the floor under smart/rf.",
        "",
        "| case | reps | load 1m (start→end) | plain s | rerunfailures s | smart-rerun s | smart/plain | smart/rf | plain/rf | CPU s plain / rf / smart | CPU smart/plain | CPU smart/rf |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def get(c, tool, key, default=None):
        return c["tools"].get(tool, {}).get(key, default)

    for c in results["cases"]:
        r = c["ratios"]
        lines.append(
            "| %s | %d | %.2f→%.2f | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
            % (
                c["title"],
                c["reps"],
                c["load_before"][0],
                c["load_after"][0],
                fmt_s(get(c, "plain", "wall_median")),
                fmt_s(get(c, "rerunfailures", "wall_median")),
                fmt_s(get(c, "smart-rerun", "wall_median")),
                fmt_ratio(r["smart_vs_plain"]),
                fmt_ratio(r["smart_vs_rerunfailures"]),
                fmt_ratio(r["plain_vs_rerunfailures"]),
                " / ".join(fmt_s(get(c, x, "cpu_median")) for x in DEFAULT_TOOLS),
                fmt_ratio(r["cpu_smart_vs_plain"]),
                fmt_ratio(r["cpu_smart_vs_rerunfailures"]),
            )
        )
    if any("pytest-smart-rerun" in c["tools"] for c in results["cases"]):
        lines += ["", "Against pytest-smart-rerun (PyPI, in-process reruns, its own venv), same run.", ""]
        lines += ["| case | pytest-smart-rerun s | smart-rerun s | smart/peer | peer/rf |", "| --- | --- | --- | --- | --- |"]
        for c in results["cases"]:
            r = c["ratios"]
            lines.append("| %s | %s | %s | %s | %s |" % (
                c["title"], fmt_s(get(c, "pytest-smart-rerun", "wall_median")), fmt_s(get(c, "smart-rerun", "wall_median")),
                fmt_ratio(r["smart_vs_peer"]), fmt_ratio(r["peer_vs_rerunfailures"])))
    if any("smart-rerun-cold" in c["tools"] for c in results["cases"]):
        lines += [
            "",
            "What starting rerun rounds early pays: smart-rerun against itself with `--prestart false` (cold), same run.",
            "",
            "| case | smart-rerun s | cold s | smart/cold | cold/rf | rounds smart (tests: median s) | rounds cold |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for c in results["cases"]:
            if "smart-rerun-cold" not in c["tools"]:
                continue
            r = c["ratios"]

            def rounds_of(tool):
                s = c["tools"].get(tool)
                return ", ".join("%d: %.2f" % (x["selected"], x["seconds_median"]) for x in s["rounds"]) if s else "-"

            lines.append(
                "| %s | %s | %s | %s | %s | %s | %s |"
                % (
                    c["case"],
                    fmt_s(get(c, "smart-rerun", "wall_median")),
                    fmt_s(get(c, "smart-rerun-cold", "wall_median")),
                    fmt_ratio(r["smart_vs_cold"]),
                    fmt_ratio(r["cold_vs_rerunfailures"]),
                    rounds_of("smart-rerun"),
                    rounds_of("smart-rerun-cold"),
                )
            )
    lines += [
        "",
        "| case | peak RSS MiB plain / rf / smart | smart own RSS MiB | smart own CPU s | smart rounds (tests selected: median s) | smart between rounds s | smart report write s | report MiB | smart JUnit write s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in results["cases"]:
        s = c["tools"].get("smart-rerun")
        lines.append(
            "| %s | %s | %s | %s | %s | %s | %s | %s | %s |"
            % (
                c["case"],
                " / ".join(fmt_mib(get(c, x, "rss_median_kib")) for x in DEFAULT_TOOLS),
                "%.1f" % (s["own_rss_median_kib"] / 1024) if s else "-",
                "%.2f" % s["own_cpu_median"] if s and s.get("own_cpu_median") is not None else "-",
                ", ".join("%d: %.2f" % (r["selected"], r["seconds_median"]) for r in s["rounds"]) if s else "-",
                fmt_s(s["between_rounds_seconds_median"]) if s else "-",
                "%.3f" % s["report_write_median"] if s else "-",
                "%.1f" % (s["report_bytes"] / 1048576) if s else "-",
                "%.3f" % s["junit_write_median"] if s and s["junit_write_median"] is not None else "-",
            )
        )
    lines += ["", "| case | target | measured | limit | met |", "| --- | --- | --- | --- | --- |"]
    for c in results["cases"]:
        for tg in c["targets"]:
            met = {True: "yes", False: "**no**", None: "not measured"}[tg["met"]]
            lines.append(
                "| %s | %s | %s %s | ≤ %s %s | %s |"
                % (c["case"], tg["target"], "-" if tg["value"] is None else tg["value"], tg["unit"], tg["limit"], tg["unit"], met)
            )
    lines += [
        "",
        "| case | executions of each broken test: plain / rf / smart | of each flaky test | module imports: plain / rf / smart by round (needed) |",
        "| --- | --- | --- | --- |",
    ]
    for c in results["cases"]:
        s = c["tools"].get("smart-rerun")
        imports = "%s / %s / %s" % (
            sum(get(c, "plain", "imports", {"-": 0}).values()) if "plain" in c["tools"] else "-",
            sum(get(c, "rerunfailures", "imports", {"-": 0}).values()) if "rerunfailures" in c["tools"] else "-",
            ", ".join(
                "r%d %d%s" % (r["number"], r["imports"], "" if r["number"] == 1 else " (%d)" % r["needed_modules"]) for r in s["rounds"]
            )
            if s
            else "-",
        )
        lines.append(
            "| %s | %s | %s | %s |"
            % (
                c["case"],
                " / ".join(str(get(c, x, "broken_executions_per_test", "-")) for x in DEFAULT_TOOLS),
                " / ".join(str(get(c, x, "flaky_executions_per_test", "-")) for x in DEFAULT_TOOLS),
                imports,
            )
        )
    return "\n".join(lines) + "\n"


def log(message):
    print("bench: " + message, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small suites, one repetition: a smoke run (~1 min)")
    parser.add_argument("--reps", type=int, help="repetitions per tool and case [quick: 1, full: 5]")
    parser.add_argument("--large-reps", type=int, help="repetitions for the 100,000-test case [1]")
    parser.add_argument(
        "--cases", help="comma-separated subset of: passing, flaky, flaky-delay, showlocals, import-heavy, conftest-heavy, large"
    )
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="warm up with `pytest --collect-only` only"
    )
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "smart-rerun"))
    parser.add_argument("--python", default=sys.executable, help="the interpreter whose pytest is measured [this one]")
    parser.add_argument(
        "--peer-python",
        default=os.path.join(ROOT, "target", "bench-peer", "bin", "python"),
        help="the interpreter of the pytest-smart-rerun venv (bench/peer-requirements.txt) [target/bench-peer]",
    )
    parser.add_argument("--out", help="results file stem [bench/results/latest, or bench/results/quick with --quick]")
    parser.add_argument(
        "--tools",
        default=",".join(DEFAULT_TOOLS),
        help="comma-separated subset of: %s (ratios need both tools) [%s]" % (", ".join(TOOLS), ",".join(DEFAULT_TOOLS)),
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the generated suites and logs")
    args = parser.parse_args(argv)

    if not os.path.exists(args.binary):
        raise SystemExit("bench: %s not found: run `cargo build --release` (scripts/bench does)" % args.binary)
    all_cases = cases(args.quick)
    if args.cases:
        wanted = args.cases.split(",")
        unknown = set(wanted) - {c["name"] for c in all_cases}
        if unknown:
            raise SystemExit("bench: unknown case(s): %s" % ", ".join(sorted(unknown)))
        all_cases = [c for c in all_cases if c["name"] in wanted]
    tools = tuple(t for t in TOOLS if t in args.tools.split(","))
    if not tools or set(args.tools.split(",")) - set(TOOLS):
        raise SystemExit("bench: --tools takes a comma-separated subset of: %s" % ", ".join(TOOLS))
    if "pytest-smart-rerun" in tools and not os.path.exists(args.peer_python):
        raise SystemExit(
            "bench: %s not found: python3 -m venv target/bench-peer && "
            "target/bench-peer/bin/pip install -r bench/peer-requirements.txt" % args.peer_python
        )
    python = os.path.abspath(args.python) if os.sep in args.python else args.python
    off = plugins_only_one_has(python, args.peer_python) if "pytest-smart-rerun" in tools else {}
    work = tempfile.mkdtemp(prefix="smart-rerun-bench-")
    ctx = {
        "off": off,
        "python": python,
        "binary": os.path.abspath(args.binary),
        "peer_python": os.path.abspath(args.peer_python),
        "reps": args.reps or (1 if args.quick else 5),
        "large_reps": args.large_reps,
        "warmup": args.warmup,
        "work": work,
        "tools": tools,
    }
    results = {
        "mode": "quick" if args.quick else "full",
        "command": " ".join(["scripts/bench"] + (argv if argv is not None else sys.argv[1:])),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(ctx),
        "cases": [],
        "plugins_off": off,
    }
    m = results["machine"]
    log("machine: %s CPUs (%s usable), %s; Python %s, pytest %s, pytest-rerunfailures %s; smart-rerun %s (%s%s)"
        % (m["nproc"], m["cpus_usable"], m["cpu_model"], m["python"], m["pytest"], m["pytest_rerunfailures"],
           m["smart_rerun_version"], m["smart_rerun_commit"][:12], ", tree modified" if m["smart_rerun_tree_modified"] else ""))
    log("load: %s" % m["uptime"])
    try:
        for case in all_cases:
            results["cases"].append(run_case(case, ctx))
    finally:
        if args.keep:
            log("kept the suites and logs in %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    stem = args.out or os.path.join(ROOT, "bench", "results", "quick" if args.quick else "latest")
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    with open(stem + ".json", "w") as fh:
        json.dump(results, fh, indent=2)
        fh.write("\n")
    text = markdown(results)
    with open(stem + ".md", "w") as fh:
        fh.write(text)
    print()
    print(text)
    log("wrote %s.json and %s.md" % (stem, stem))
    missed = ["%s: %s" % (c["case"], t["target"]) for c in results["cases"] for t in c["targets"] if t["met"] is False]
    if missed:
        log("targets missed: " + "; ".join(missed))
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
