#!/usr/bin/env python3
"""Profiles what smart-rerun adds to a pytest process: `bench/overhead.py`, see docs/benchmarks.md.

0. The collector's per-test hot path in isolation: its logstart / 3 x logreport / logfinish hooks called in
   a loop on 2,000 synthetic passing reports, writing to a real events file; best of 15. `--baseline PATH`
   measures another collector.py the same way (e.g. `git show REV:src/runner/collector.py > old.py`).
1. Per-test overhead of the collector plugin: the same all-passing suite of N tests run by pytest alone and
   by pytest with the collector loaded exactly as smart-rerun loads it (PYTHONPATH + PYTEST_PLUGINS +
   SMART_RERUN_EVENTS), interleaved, R times; CPU time (user + sys) of the process, less sensitive than
   wall time to other load, though on a shared machine still too noisy to resolve 1-2%.
2. The fixed cost of one pytest process (what every extra round pays): a one-test suite, same measure.
3. The collector's per-test hooks timed from inside the process (CPU time, process_time, around each call;
   the figures include the clock calls' own cost, about 1-2 µs per call).
4. cProfile of one pytest run with the collector: the collector's own functions, by cumulative time.

Standard library only; uses the collector source from src/runner/collector.py (the one the binary embeds).
"""

import argparse
import cProfile
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as bench  # noqa: E402  (bench/run.py: suite generation and measurement)

COLLECTOR = os.path.join(bench.ROOT, "src", "runner", "collector.py")
MODULE = "_smart_rerun_collector"
TIMING = "_smart_rerun_hook_timing"

# Loaded after the collector (PYTEST_PLUGINS order); wraps the Collector's plain per-test hooks, and times
# the makereport hookwrapper around its generator, before pytest_configure registers an instance.
TIMING_SOURCE = r"""
import atexit, functools, json, os, time
import _smart_rerun_collector as c

TOTALS = {}
HOOKS = ("pytest_runtest_logstart", "pytest_runtest_logreport", "pytest_runtest_logfinish")


def _timed(name, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            entry = TOTALS.setdefault(name, [0, 0.0])
            entry[0] += 1
            entry[1] += time.process_time() - t0
    return wrapper


def _timed_wrapper(name, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        gen = fn(*args, **kwargs)
        t0 = time.process_time()
        step = next(gen)
        spent = time.process_time() - t0
        outcome = yield step
        t0 = time.process_time()
        try:
            gen.send(outcome)
        except StopIteration:
            pass
        spent += time.process_time() - t0
        entry = TOTALS.setdefault(name, [0, 0.0])
        entry[0] += 1
        entry[1] += spent
    return wrapper


for _name in HOOKS:
    setattr(c.Collector, _name, _timed(_name, getattr(c.Collector, _name)))
c.Collector.pytest_runtest_makereport = _timed_wrapper(
    "pytest_runtest_makereport", c.Collector.pytest_runtest_makereport
)
c.Collector.pytest_collection_finish = _timed("pytest_collection_finish", c.Collector.pytest_collection_finish)


@atexit.register
def _dump():
    with open(os.environ["SMART_RERUN_HOOK_TIMING"], "w") as fh:
        json.dump(TOTALS, fh)
"""


HOT_PATH_SOURCE = r"""
import importlib.util, os, sys, timeit
sys.path.insert(0, os.path.join(sys.argv[2], "keys"))  # _smart_rerun_keys, as the binary writes it
spec = importlib.util.spec_from_file_location("_collector_under_test", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)


class Config:
    pass


class Report:
    def __init__(self, nodeid, when):
        self.nodeid, self.when = nodeid, when
        self.failed = self.skipped = False
        self.passed = True
        self.duration, self.longrepr, self.sections, self.outcome = 0.0001, None, [], "passed"


events = os.path.join(sys.argv[2], "hot-path.jsonl")
collector = mod.Collector(Config(), mod._Events(events), None, events, None)
ids = ["test_m%03d.py::test_%06d" % (i // 100, i) for i in range(2000)]
reports = [[Report(n, w) for w in ("setup", "call", "teardown")] for n in ids]
location = ("test_m000.py", 10, "test_x")


def suite():
    for nodeid, phases in zip(ids, reports):
        collector.pytest_runtest_logstart(nodeid, location)
        for rep in phases:
            collector.pytest_runtest_logreport(rep)
        collector.pytest_runtest_logfinish(nodeid, location)


print(min(timeit.repeat(suite, number=1, repeat=15)) / len(ids))
"""


def hot_path(python, collector, work):
    out = subprocess.run([python, "-c", HOT_PATH_SOURCE, collector, work], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("profile: the hot path of %s failed:\n%s" % (collector, out.stderr))
    return float(out.stdout.strip())


def pytest_cmd(python, extra=()):
    return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:rerunfailures"] + list(extra)


def write_keys(directory):
    """The ini keys module the binary writes beside the collector for each run (INI_KEYS: name and help),
    from the same settings table, through the wheel's generated copy of it."""
    settings = {}
    with open(os.path.join(bench.ROOT, "python", "pytest_smart_rerun", "_settings.py")) as fh:
        exec(fh.read(), settings)
    with open(os.path.join(directory, "_smart_rerun_keys.py"), "w") as fh:
        fh.write("INI_KEYS = (\n")
        for ini, _flag, _kind, help_text in settings["KEYS"]:
            fh.write("    (%s, %s),\n" % (json.dumps(ini), json.dumps(help_text)))
        fh.write(")\n")


def env_for(work, plugin_dir, tag):
    """pytest's environment: alone (plugin_dir None) or with the collector in plugin_dir loaded as smart-rerun
    loads it."""
    env = bench.clean_env()
    env[bench.STATE_ENV] = os.path.join(work, "state")
    if plugin_dir:
        env["PYTHONPATH"] = plugin_dir
        env["PYTEST_PLUGINS"] = MODULE
        events = os.path.join(work, "events-%s.jsonl" % tag)
        if os.path.exists(events):
            os.remove(events)
        env["SMART_RERUN_EVENTS"] = events
        env["SMART_RERUN_ROUND"] = "1"
    return env


def compare(work, suite, python, reps, variants):
    """{label: (median CPU s, median wall s, min CPU s)} for each (label, plugin_dir), interleaved."""
    cpu = {label: [] for label, _ in variants}
    wall = {label: [] for label, _ in variants}
    for rep in range(reps):
        order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
        for label, plugin_dir in order:
            w, c, _rss, code = bench.measure(
                pytest_cmd(python), suite, env_for(work, plugin_dir, "cmp"), os.path.join(work, "out.log")
            )
            if code != 0:
                raise SystemExit("profile: pytest exited %d (see %s)" % (code, os.path.join(work, "out.log")))
            cpu[label].append(c)
            wall[label].append(w)
    return {k: (statistics.median(cpu[k]), statistics.median(wall[k]), min(cpu[k])) for k in cpu}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--baseline", help="another collector.py to compare in parts 0 and 1")
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="smart-rerun-profile-")
    try:
        plugin = os.path.join(work, "plugin")
        os.makedirs(plugin)
        os.makedirs(os.path.join(work, "state"))
        shutil.copy(COLLECTOR, os.path.join(plugin, MODULE + ".py"))
        write_keys(plugin)
        os.makedirs(os.path.join(work, "keys"))
        write_keys(os.path.join(work, "keys"))
        variants = [("pytest alone", None), ("pytest + collector", plugin)]
        if args.baseline:
            os.makedirs(os.path.join(work, "baseline"))
            shutil.copy(args.baseline, os.path.join(work, "baseline", MODULE + ".py"))
            write_keys(os.path.join(work, "baseline"))
            variants.append(("pytest + baseline collector", os.path.join(work, "baseline")))
        suite = os.path.join(work, "suite")
        one = os.path.join(work, "one")
        case = {"name": "profile", "tests": args.tests, "modules": 20, "flaky": 0, "broken": 0}
        bench.generate(case, suite)
        bench.generate({"name": "one", "tests": 1, "modules": 1, "flaky": 0, "broken": 0}, one)
        print("profile: load %s" % (os.getloadavg(),))
        print("0. collector hot path in isolation (logstart + 3 logreport + logfinish), best of 15 x 2,000 tests:")
        versions = [("src/runner/collector.py", COLLECTOR)]
        if args.baseline:
            versions.append(("baseline " + args.baseline, os.path.abspath(args.baseline)))
        best = {}
        for _ in range(3):  # alternate, keep each version's best
            for label, path in versions:
                t = hot_path(args.python, path, work)
                best[label] = min(best.get(label, t), t)
        for label, _path in versions:
            print("   %-40s %6.2f µs per test" % (label, 1e6 * best[label]))
        # Warm-up: bytecode for the suites and the collector.
        for s in (suite, one):
            for _label, plugin_dir in variants:
                bench.measure(pytest_cmd(args.python), s, env_for(work, plugin_dir, "warm"), os.path.join(work, "out.log"))

        res = compare(work, suite, args.python, args.reps, variants)
        c0, _w0, m0 = res["pytest alone"]
        print("1. %d passing tests, median of %d (CPU s / wall s / min CPU s; overhead vs pytest alone):" % (args.tests, args.reps))
        for label, _ in variants:
            c, w, m = res[label]
            print(
                "   %-28s %.3f / %.3f / %.3f   %+5.1f%% CPU median, %+5.1f%% min, %+6.1f µs per test (min)"
                % (label, c, w, m, 100 * (c / c0 - 1), 100 * (m / m0 - 1), 1e6 * (m - m0) / args.tests)
            )
        res = compare(work, one, args.python, args.reps, variants[:2])
        print("2. one pytest process running one test (the fixed cost of a round; median CPU s / wall s):")
        for label, _ in variants[:2]:
            c, w, _m = res[label]
            print("   %-28s %.3f / %.3f" % (label, c, w))

        # 3. Hook timing from inside the process.
        with open(os.path.join(work, "plugin", TIMING + ".py"), "w") as fh:
            fh.write(TIMING_SOURCE)
        best = {}
        for rep in range(args.reps):
            env = env_for(work, plugin, "timing")
            env["PYTEST_PLUGINS"] = MODULE + "," + TIMING
            env["SMART_RERUN_HOOK_TIMING"] = os.path.join(work, "timing.json")
            bench.measure(pytest_cmd(args.python), suite, env, os.path.join(work, "out.log"))
            with open(env["SMART_RERUN_HOOK_TIMING"]) as fh:
                for name, (calls, spent) in json.load(fh).items():
                    if name not in best or spent < best[name][1]:
                        best[name] = (calls, spent)
        print("3. collector hooks timed in-process, best of %d runs of %d tests:" % (args.reps, args.tests))
        per_test = 0.0
        for name, (calls, spent) in sorted(best.items(), key=lambda kv: -kv[1][1]):
            print("   %-28s %6d calls %8.4f s  %6.2f µs per test" % (name, calls, spent, 1e6 * spent / args.tests))
            per_test += spent / args.tests
        print("   total                                             %6.2f µs per test" % (1e6 * per_test))

        # 4. cProfile inside one process with the collector.
        env = env_for(work, plugin, "cprofile")
        prof = os.path.join(work, "pytest.prof")
        code = subprocess.run(
            [args.python, "-m", "cProfile", "-o", prof, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:rerunfailures"],
            cwd=suite,
            env=env,
            stdout=subprocess.DEVNULL,
        ).returncode
        if code != 0:
            raise SystemExit("profile: pytest under cProfile exited %d" % code)
        stats = pstats.Stats(prof)
        total = stats.total_tt
        rows = []
        for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():
            if filename.endswith(MODULE + ".py"):
                rows.append((cumtime, tottime, ncalls, "%s:%d" % (func, line)))
        rows.sort(reverse=True)
        print("4. cProfile of pytest + collector, %d tests: %.3f s in total (profiler-inflated)" % (args.tests, total))
        print("   collector functions by cumulative time (cum s / own s / calls):")
        for cum, tot, calls, name in rows[:12]:
            print("   %8.4f %8.4f %7d  %s  (%.1f%% of the run)" % (cum, tot, calls, name, 100 * cum / total))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
