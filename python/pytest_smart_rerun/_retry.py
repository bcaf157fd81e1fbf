"""Marked tests in a plain ``pytest`` run: retried through the binary, only when one of them failed.

pytest-smart-rerun 0.1.x retried tests marked ``@pytest.mark.smart_rerun`` whenever it was installed. 1.x
keeps that rule without making every plain run pay for it: when smart-rerun was not asked for, pytest runs
as usual and this plugin only notes which failed reports carry the marker (one comparison per report). When
the run ends with marked tests among its failures, pytest has already printed its summary; those tests then
get the rest of their attempts from the binary, in fresh pytest processes (``smart-rerun run`` with this
module loaded in its rounds to narrow the suite to them), and the run's exit status becomes what the retry
decided. A run with no failed marked test costs nothing more.

Two halves live here: :class:`MarkedRetry`, registered in the user's pytest when it qualifies, and the
``pytest_collection_modifyitems`` hook that the binary's rounds load with ``-p pytest_smart_rerun._retry``.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

MARKER = "smart_rerun"
# Set for the binary's rounds: a JSON file {"nodeids": {nodeid: attempts spent}}.
SELECT_ENV = "PYTEST_SMART_RERUN_RETRY"
DEFAULT_MAX = 2
TESTS_FAILED = 1


def _closest(item, key):
    for mark in item.iter_markers(name=MARKER):
        if key in mark.kwargs:
            return mark.kwargs[key]
    return None


class MarkedRetry:
    """Watches a plain pytest run and, at its end, retries the marked tests that failed."""

    def __init__(self, config, command, find_binary):
        self.config = config
        self.command = command
        self.find_binary = find_binary
        self.failed = {}  # nodeid -> when it failed (time.monotonic())
        self.other_failures = False
        self.session = None

    def pytest_runtest_logreport(self, report):
        if report.failed:
            if MARKER in report.keywords:
                self.failed.setdefault(report.nodeid, time.monotonic())
            else:
                self.other_failures = True

    def pytest_collectreport(self, report):
        if report.failed:
            self.other_failures = True

    def pytest_sessionfinish(self, session):
        self.session = session

    # After pytest's terminal summary (printed in pytest_sessionfinish), and before pytest.main() returns
    # session.exitstatus: the retry's verdict can still change the exit status.
    def pytest_unconfigure(self, config):
        session = self.session
        if not self.failed or session is None or int(session.exitstatus) != TESTS_FAILED:
            return
        # -x and --maxfail set shouldfail; pytest.exit() and a plugin's stop set shouldstop.
        if session.shouldfail or session.shouldstop:
            self._say(
                "not retrying %s marked @pytest.mark.smart_rerun: the run stopped early (-x or --maxfail); "
                "run with --smart-rerun to rerun failed tests" % _tests(len(self.failed))
            )
            return
        retries, wait = self._plan(session)
        if not retries:
            return
        if wait > 0:
            time.sleep(wait)
        code = self._retry(retries)
        if code == 0 and not self.other_failures:
            session.exitstatus = 0

    def _plan(self, session):
        """{nodeid: attempts spent} for the marked failures to retry, and how long to wait for their delays."""
        items = {item.nodeid: item for item in getattr(session, "items", ())}
        retries, wait, now = {}, 0.0, time.monotonic()
        for nodeid, failed_at in self.failed.items():
            item = items.get(nodeid)
            # Under pytest-xdist the controller holds no items: the marker's values reach the binary anyway,
            # through its own collection; only the wait before the first retry falls back to none.
            max_attempts = _closest(item, "max") if item is not None else None
            if max_attempts is None:
                max_attempts = DEFAULT_MAX
            if isinstance(max_attempts, int) and not isinstance(max_attempts, bool) and max_attempts <= 1:
                continue
            retries[nodeid] = 1
            delay = _closest(item, "delay") if item is not None else None
            if isinstance(delay, (int, float)) and not isinstance(delay, bool) and delay > 0:
                wait = max(wait, failed_at + delay - now)
        return retries, wait

    def _retry(self, retries):
        binary = self.find_binary()
        workdir = tempfile.mkdtemp(prefix="pytest-smart-rerun-")
        select = os.path.join(workdir, "select.json")
        report = os.path.join(workdir, "report.json")
        with open(select, "w", encoding="utf-8") as f:
            json.dump({"nodeids": retries}, f)
        argv = [binary, "run", "--from-pytest", "--report", report]
        # The plain run already spoke to the CI; a retry of a few tests does not post over it.
        for flag in ("--github-annotations", "--github-summary", "--github-comment", "--gitlab-note"):
            argv.append(flag + "=false")
        argv.append("--")
        argv.extend(self.command)
        argv.extend(["-p", "pytest_smart_rerun._retry"])
        # The plain run wrote the user's JUnit XML and coverage data: the retry must not replace them.
        argv.append("--junitxml=" + os.path.join(workdir, "junit.xml"))
        if self.config.pluginmanager.hasplugin("_cov"):
            argv.append("--no-cov")
        env = dict(os.environ)
        env[SELECT_ENV] = select
        self._say("retrying %s marked @pytest.mark.smart_rerun in a fresh pytest" % _tests(len(retries)))
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            code = subprocess.call(argv, env=env)
        except KeyboardInterrupt:
            code = 2
        self._verdicts(report)
        return code

    def _verdicts(self, report):
        try:
            with open(report, encoding="utf-8") as f:
                tests = json.load(f).get("tests", [])
        except (OSError, ValueError):
            return
        for test in tests:
            nodeid, outcome = test.get("nodeid"), test.get("outcome")
            if nodeid not in self.failed:
                continue
            # The binary lists every attempt of a test that failed in the retry; one that passed straight
            # away lists none. The plain run's failure comes first.
            attempts = 1 + (len(test.get("attempts") or ()) or 1)
            if outcome in ("passed", "flaky"):
                self._say("%s is flaky: it failed, then passed on attempt %d" % (nodeid, attempts))
            else:
                self._say("%s still fails after %d attempts" % (nodeid, attempts))

    def _say(self, text):
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        line = "smart-rerun: " + text
        if reporter is not None:
            reporter.write_line(line, yellow=True)
        else:
            print(line)


def _tests(n):
    return "1 failed test" if n == 1 else "%d failed tests" % n


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """In the binary's rounds: keep only the tests being retried, each with the attempts it has left."""
    path = os.environ.get(SELECT_ENV)
    if not path:
        return
    with open(path, encoding="utf-8") as f:
        spent = json.load(f)["nodeids"]
    keep, drop = [], []
    for item in items:
        if item.nodeid in spent:
            keep.append(item)
            max_attempts = _closest(item, "max")
            if max_attempts is None:
                max_attempts = DEFAULT_MAX
            if isinstance(max_attempts, int) and not isinstance(max_attempts, bool):
                # The closest marker wins per key: this one, added closest, says how many attempts are left.
                # (A value that is not a number is left for the binary to name, with what is allowed.)
                left = max(1, max_attempts - spent[item.nodeid])
                item.add_marker(pytest.mark.smart_rerun(max=left), append=False)
        else:
            drop.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
