"""smart-rerun's failure rendering: what a failure is (its type, message and crash site), and when pytest
spends the time to draw its traceback.

Drawing a long traceback with ``--showlocals`` costs far more than running a typical unit test (the repr of
every local of every frame), and in the first round most failures of a flaky suite are replaced by a passing
rerun a few seconds later: an in-process rerun plugin never draws them. So in the first round, while a
rerun round can follow (the binary's verdict on the settings says so, with ``render``), a failure's report
gets a brief rendering (``--tb=short``, no locals: type, message, crash site and the frames) and its
ExceptionInfo is kept. Once the round's tests have run, before pytest prints its FAILURES section, the
plugin lists the failed node ids in a ``render_query`` event and waits (bounded) for the binary's answer
file: the tests it will not rerun. Those are drawn again as the user's options ask, replacing the report's
longrepr (so the terminal shows them exactly as a plain pytest would), and each goes to the binary in a
``rendered`` event. Without an answer in time, every kept failure is drawn in full: nothing is lost.

Under pytest-xdist the workers make the reports: each worker keeps its own failures, asks the binary at its
session's end (its query goes to the controller's events file), and hands the full reports to the
controller with its ``workerfinished`` message; the controller puts their longrepr on the reports it holds
(the ones its terminal prints) and sends the ``rendered`` events. A process forked from the first round (a
warm rerun round) never defers: the plugin is bound to the process that registered it.

The first round's terminal summary is also spared pytest's search, for each failure it prints, through
every passed report of the session (see _teardown_output): on a large suite that search, not the drawing,
is most of what the failures cost.
"""

import json
import os
import time

import pytest

# Rendering options the brief rendering overrides; any other --tb style is cheap already.
EXPENSIVE_STYLES = ("auto", "long")
BRIEF = {"tbstyle": "short", "showlocals": False, "fulltrace": False}
_PHASES = ("setup", "call", "teardown")
# What a worker hands its controller: the serialized reports of its fully drawn failures.
WORKEROUTPUT_KEY = "smart_rerun_rendered"
# The longest wait for the binary's answer, whatever the verdict allows.
WAIT_CAP = 300.0


def _qualname(cls):
    module = getattr(cls, "__module__", None) or "builtins"
    name = getattr(cls, "__qualname__", None) or cls.__name__
    return "%s.%s" % (module, name)


def describe_exception(excinfo, item_path):
    """Type, MRO, message (uncapped) and locations of a failure, from pytest's ExceptionInfo."""
    exc_type = excinfo.type
    mro = [_qualname(c) for c in getattr(exc_type, "__mro__", (exc_type,)) if c is not object]
    try:
        message = str(excinfo.value)
    except Exception as err:  # a broken __str__ must not take the report down
        message = "<unprintable %s: %s>" % (exc_type.__name__, err)
    crash_path = crash_line = None
    test_line = None
    try:
        entries = list(excinfo.traceback)
        if entries:
            last = entries[-1]
            crash_path, crash_line = str(last.path), last.lineno + 1
        for entry in reversed(entries):
            if str(entry.path) == item_path:
                test_line = entry.lineno + 1
                break
    except Exception:
        pass
    return {
        "type": mro[0] if mro else _qualname(exc_type),
        "mro": mro,
        "message": message,
        "crash_path": crash_path,
        "crash_line": crash_line,
        "test_line": test_line,
    }


def report_text(rep):
    """A report's traceback as the events carry it."""
    text = getattr(rep, "longreprtext", None)
    if not text and rep.longrepr is not None:
        text = str(rep.longrepr)
    return text


def _teardown_output(rep):
    """Whether the terminal prints anything of this passed phase's report after a failure: its teardown's
    captured output (terminal.py, print_teardown_sections).

    For each failure it prints, pytest's FAILURES section looks for the test's teardown report among every
    passed setup and teardown report of the session (stats[""], two per test): on packaging's 64,000 tests
    with 1,900 failures, 240 million comparisons, 4 minutes, more than the tests take to run. An
    in-process rerun plugin never pays it, since its reran tests end passed; smart-rerun's first round
    would, for every failure a rerun then replaces. The summary is given only the reports it could print."""
    if getattr(rep, "when", None) != "teardown":
        return False
    return any("teardown" in name for name, _ in getattr(rep, "sections", None) or ())


def _full(item, excinfo, when):
    """The longrepr pytest's own makereport gives a failure (reports.py, pytest 7.0 to 9)."""
    if when == "call":
        return item.repr_failure(excinfo)
    return item._repr_failure_py(excinfo, style=item.config.getoption("tbstyle", "auto"))


class Render:
    """Defers drawing the first round's failures until the binary says which ones stay failed."""

    def __init__(self, config, events, verdict_path, worker, cap):
        self.config = config
        # The round's events file (the controller's, in a worker): the binary reads the query there.
        self.events = events
        self.verdict_path = verdict_path
        self.worker = worker
        self.cap = cap
        self.pid = os.getpid()
        # None until the first failure: then False (draw as usual) or the verdict's render plan.
        self.plan = None
        # (nodeid, phase) -> (item, excinfo, report): failures drawn briefly, in this process.
        self.kept = {}
        # The controller under xdist: (nodeid, phase) -> the failed reports its workers sent.
        self.held = {}
        self.interrupted = False
        self.settled = False

    def _on(self):
        if os.getpid() != self.pid:
            return False
        if self.plan is None:
            self.plan = self._decide()
        return bool(self.plan)

    def _decide(self):
        option = self.config.option
        style = getattr(option, "tbstyle", "auto")
        if style not in EXPENSIVE_STYLES and not getattr(option, "showlocals", False):
            return False
        try:
            with open(self.verdict_path, "r", encoding="utf-8") as fh:
                plan = json.load(fh).get("render")
        except (OSError, ValueError, AttributeError):
            return False
        return plan if isinstance(plan, dict) and plan.get("answer") else False

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        if call.excinfo is None or not self._on():
            yield
            return
        option = self.config.option
        saved = {name: getattr(option, name) for name in BRIEF if hasattr(option, name)}
        for name in saved:
            setattr(option, name, BRIEF[name])
        try:
            outcome = yield
        finally:
            for name, value in saved.items():
                setattr(option, name, value)
        try:
            report = outcome.get_result()
        except BaseException:
            return
        # Read after the makereport: unittest's replaces call.excinfo with the test case's own.
        excinfo = call.excinfo
        if report.failed and report.when in _PHASES and isinstance(excinfo, pytest.ExceptionInfo):
            self.kept[(report.nodeid, report.when)] = (item, excinfo, report)

    def pytest_runtest_logreport(self, report):
        # Only the xdist controller sees reports that came from a worker (they carry its node).
        if report.failed and getattr(report, "node", None) is not None and report.when in _PHASES:
            if self._on():
                self.held[(report.nodeid, report.when)] = report

    def pytest_keyboard_interrupt(self, excinfo):
        # The run stops: no test is rerun, so every failure is drawn in full without asking.
        self.interrupted = True

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter):
        # Before the terminal reporter's own wrapper prints FAILURES and the -ra lines.
        if self.worker is None:
            self._settle_here()
        stats = getattr(terminalreporter, "stats", None)
        passed = stats.get("") if isinstance(stats, dict) and os.getpid() == self.pid else None
        if passed:
            stats[""] = [rep for rep in passed if _teardown_output(rep)]
        try:
            yield
        finally:
            if passed:
                stats[""] = passed

    def pytest_sessionfinish(self, session):
        # A worker: inside xdist's wrapper, which sends workeroutput to the controller once this returns.
        if self.worker is None:
            return
        drawn = self._settle()
        if drawn:
            hook = self.config.hook
            self.config.workeroutput[WORKEROUTPUT_KEY] = [
                hook.pytest_report_to_serializable(config=self.config, report=rep) for rep in drawn
            ]

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        output = getattr(node, "workeroutput", None) or {}
        for data in output.get(WORKEROUTPUT_KEY) or ():
            try:
                rep = self.config.hook.pytest_report_from_serializable(config=self.config, data=data)
            except Exception:
                continue
            if rep is None:
                continue
            held = self.held.pop((rep.nodeid, rep.when), None)
            if held is not None:
                held.longrepr = rep.longrepr
            self._emit(rep)

    @pytest.hookimpl(tryfirst=True)
    def pytest_unconfigure(self, config):
        # No terminal summary (an internal error, -p no:terminal): the report still gets the full text.
        if self.worker is None:
            self._settle_here()
        self.held = {}

    def _settle_here(self):
        for rep in self._settle():
            self._emit(rep)

    def _emit(self, rep):
        self.events.emit(
            "rendered", {"nodeid": rep.nodeid, "phase": rep.when, "traceback": self.cap(report_text(rep))}
        )

    def _settle(self):
        """Draws in full the kept failures the binary will not rerun; returns their reports."""
        if self.settled or os.getpid() != self.pid:
            return []
        self.settled = True
        kept, self.kept = self.kept, {}
        if not kept:
            return []
        stay = None if self.interrupted else self._ask(sorted({nodeid for nodeid, _ in kept}))
        drawn = []
        for (nodeid, when), (item, excinfo, report) in kept.items():
            if stay is not None and nodeid not in stay:
                continue
            try:
                report.longrepr = _full(item, excinfo, when)
            except Exception:
                continue  # the brief rendering stays
            drawn.append(report)
        return drawn

    def _ask(self, nodeids):
        """The node ids the binary will not rerun; None when it did not answer in time."""
        path = self.plan["answer"] + (".%s.json" % self.worker if self.worker else ".json")
        self.events.emit("render_query", {"worker": self.worker, "nodeids": nodeids})
        try:
            wait = min(float(self.plan.get("wait") or 0), WAIT_CAP)
        except (TypeError, ValueError):
            wait = 0.0
        deadline = time.monotonic() + wait
        pause = 0.0005
        try:
            while True:
                try:
                    with open(path, "r", encoding="utf-8") as fh:
                        return frozenset(json.load(fh).get("failed") or ())
                except (OSError, ValueError, AttributeError):
                    pass
                if time.monotonic() >= deadline:
                    return None
                time.sleep(pause)
                pause = min(pause * 2, 0.005)
        except KeyboardInterrupt:
            # Ctrl-C while pytest prints its summary: nothing will be rerun, and the summary is finished.
            return None


def register(config, events, verdict_path, worker, cap):
    """Registers the plugin on ``config``; ``events`` is an open events writer for the query."""
    render = Render(config, events, verdict_path, worker, cap)
    config.pluginmanager.register(render, "smart_rerun_render")
    return render
