"""What the warm snapshot costs in memory: the first round's pytest forks it after collection, and it lives
until the run ends so that rerun rounds can be forked from it.

Runs `smart-rerun run` on a generated suite (the `large` case of bench/run.py by default: 100,000 tests in
200 modules, 1% flaky, 0.25% broken) and samples /proc every 20 ms: the first round's pytest (smart-rerun's
child) and the snapshot (that pytest's child, waiting on its control pipe). For each it records the peak
RSS and the peak private memory (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup: what the
process holds that no other process shares). While the first round runs, the snapshot shares its pages
with it copy-on-write: its private memory is what it really adds. After the first round has exited the
snapshot is the only holder of those pages: its RSS is then what it keeps for the rest of the run.

    target/venvs/latest/bin/python bench/snapshot.py [--tests N] [--modules M] [--out STEM]

Standard library only; Linux only (it reads /proc). Writes STEM.json and STEM.md (default
bench/results/snapshot.{json,md}) and prints the Markdown.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import suite  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def children(pid):
    """The pids whose parent is pid."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def memory(pid):
    """(RSS KiB, private KiB) of pid, or None once it is gone."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as fh:
            fields = {}
            for line in fh:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    fields[parts[0][:-1]] = int(parts[1])
    except OSError:
        return None
    return fields.get("Rss", 0), fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)


class Sampler(threading.Thread):
    """Follows smart-rerun's first child (the first round's pytest) and that child's child (the snapshot)."""

    def __init__(self, root):
        super().__init__(daemon=True)
        self.root = root
        self.first = None
        self.snapshot = None
        self.peak = {"first_rss": 0, "first_private": 0, "snapshot_rss_during": 0, "snapshot_private_during": 0, "snapshot_rss_after": 0, "snapshot_private_after": 0}
        self.first_exited_at = None
        self.stop = False

    def run(self):
        started = time.monotonic()
        while not self.stop:
            if self.first is None:
                kids = children(self.root)
                if kids:
                    self.first = kids[0]
            if self.first is not None and self.snapshot is None:
                kids = children(self.first)
                if kids:
                    self.snapshot = kids[0]
            first = memory(self.first) if self.first is not None else None
            if first is not None:
                self.peak["first_rss"] = max(self.peak["first_rss"], first[0])
                self.peak["first_private"] = max(self.peak["first_private"], first[1])
            elif self.first is not None and self.first_exited_at is None:
                self.first_exited_at = time.monotonic() - started
            snap = memory(self.snapshot) if self.snapshot is not None else None
            if snap is not None:
                when = "during" if first is not None else "after"
                self.peak["snapshot_rss_" + when] = max(self.peak["snapshot_rss_" + when], snap[0])
                self.peak["snapshot_private_" + when] = max(self.peak["snapshot_private_" + when], snap[1])
            time.sleep(0.02)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=100000)
    parser.add_argument("--modules", type=int, default=200)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "smart-rerun"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "snapshot"))
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        sys.exit("bench/snapshot.py reads /proc: Linux only")
    case = {
        "name": "large",
        "tests": args.tests,
        "modules": args.modules,
        "flaky": args.tests // 100,
        "broken": args.tests // 400,
        "sleep": 0.0,
        "import_cost": 0.0,
    }
    scratch = tempfile.mkdtemp(prefix="sr-bench-snapshot-")
    try:
        directory = os.path.join(scratch, "suite")
        suite.generate(case, directory)
        env = dict(os.environ)
        for key in list(env):
            if key.startswith(("PYTEST_", "SMART_RERUN_")):
                del env[key]
        env[suite.STATE_ENV] = os.path.join(scratch, "state")
        # The warm-up writes the modules' bytecode, as any second run of a suite finds it.
        subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider"], cwd=directory, env=env, stdout=subprocess.DEVNULL, check=True)
        cmd = [args.binary, "run", "--color", "never", "--max", "3", "--report", os.path.join(scratch, "report.json"), "--", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:rerunfailures"]
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sampler = Sampler(proc.pid)
        sampler.start()
        code = proc.wait()
        wall = time.monotonic() - started
        sampler.stop = True
        sampler.join()
        with open(os.path.join(scratch, "report.json")) as fh:
            report = json.load(fh)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    notes = [r.get("note") or "" for r in report["run"]["rounds"]]
    forked = sum(1 for n in notes if n.startswith("forked from the first round"))
    result = {
        "tests": args.tests,
        "modules": args.modules,
        "exit": code,
        "wall_s": round(wall, 2),
        "rounds": len(notes),
        "forked_rounds": forked,
        "peak_kib": sampler.peak,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()},
    }
    mib = lambda kib: "%.1f" % (kib / 1024)  # noqa: E731
    p = sampler.peak
    md = "\n".join(
        [
            "# The warm snapshot's memory",
            "",
            "%d tests in %d modules; %d rounds, %d of them forked from the snapshot; %.1f s; load %.2f %.2f %.2f."
            % (args.tests, args.modules, len(notes), forked, wall, *result["machine"]["load"]),
            "",
            "| process | peak RSS MiB | peak private MiB |",
            "| --- | --- | --- |",
            "| first round's pytest | %s | %s |" % (mib(p["first_rss"]), mib(p["first_private"])),
            "| snapshot, while the first round runs | %s | %s |" % (mib(p["snapshot_rss_during"]), mib(p["snapshot_private_during"])),
            "| snapshot, after the first round exited | %s | %s |" % (mib(p["snapshot_rss_after"]), mib(p["snapshot_private_after"])),
            "",
        ]
    )
    with open(args.out + ".json", "w") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    with open(args.out + ".md", "w") as fh:
        fh.write(md)
    print(md)
    if code not in (0, 1) or forked == 0:
        sys.exit("unexpected: exit %d, %d forked rounds" % (code, forked))


if __name__ == "__main__":
    main()
