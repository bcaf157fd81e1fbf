"""smart-rerun's warm rounds: a snapshot of the first round's pytest, forked after collection.

The collector registers this plugin in the first round's pytest when the binary handed it two pipes
(SMART_RERUN_WARM="<control read fd>,<status write fd>"). Right before the test loop starts (after
pytest_collection_modifyitems and pytest_collection_finish, after the binary's verdict on the settings,
before any test and any fixture ran) the process forks:

- the parent goes on as the first round, unchanged;
- the child is the snapshot: it waits on the control pipe. For each line the binary writes (a rerun
  round: its number, events file and selection file) it forks a round process, reports its pid and, once
  it exits, its exit status on the status pipe. The end of file on the control pipe (the binary finished,
  or died, even by SIGKILL) ends it at once. It never returns into pytest.
- a round process narrows the session to the round's tests, points the collector at the round's events
  file, prints its own session header and returns into pytest's test loop: its fixtures, session-scoped
  ones included, are set up afresh, as in a new pytest. It dies with the snapshot (PR_SET_PDEATHSIG).

Forking is refused, with a one-line reason on the status pipe, where it is unsafe: a thread other than the
main one alive (a forked child would hold only a copy of the forking thread, with any lock another thread
held locked forever), pytest-xdist distributing the tests, or a platform other than Linux. The binary
then starts rerun rounds as fresh pytest processes.

Status lines (ASCII): ``snapshot PID``, ``fallback REASON``, ``started ROUND PID``, ``exit ROUND CODE``,
``signal ROUND SIGNAL``.
"""

import atexit
import gc
import json
import os
import select
import signal
import sys
import threading
import time

import pytest

WARM_ENV = "SMART_RERUN_WARM"
PR_SET_PDEATHSIG = 1


def _say(fd, line):
    data = (line.replace("\n", " ") + "\n").encode("ascii", "replace")
    while data:
        data = data[os.write(fd, data) :]


def _unsafe(config):
    """Why this process must not be forked now, or None."""
    if not sys.platform.startswith("linux"):
        return "warm rounds are Linux-only"
    if not hasattr(os, "fork"):
        return "this Python has no os.fork"
    if getattr(config.option, "numprocesses", None) or getattr(config.option, "dist", "no") not in (None, "no"):
        return "pytest-xdist distributes the tests (its controller collects none)"
    if getattr(config.option, "collectonly", False):
        return "--collect-only runs no test"
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    idle = [t for t in others if _idle_server(t)]
    others = [t for t in others if t not in idle]
    if others:
        return _threads(len(others), ", ".join(_describe(t) for t in others))
    try:
        tasks = len(os.listdir("/proc/self/task"))
    except OSError:
        tasks = 1
    if tasks > 1 + len(idle):
        return _threads(tasks - 1 - len(idle), "started outside Python's threading module")
    return None


def _idle_server(thread):
    """pytest-rerunfailures' server for its xdist workers, which it starts in every pytest where xdist is
    installed. Without workers (ruled out above) nothing connects to it: it waits in accept(), holding no
    lock, and a forked copy simply lacks it. A connection would start a thread of its own, which counts."""
    target = getattr(thread, "_target", None)
    return (
        getattr(target, "__module__", None) == "pytest_rerunfailures"
        and getattr(target, "__name__", None) == "run_server"
        and thread.daemon
    )


def _threads(count, which):
    many = count != 1
    return "%d %s besides the main one %s alive after collection (%s)" % (
        count, "threads" if many else "thread", "were" if many else "was", which)


def _describe(thread):
    target = getattr(thread, "_target", None)
    module = getattr(target, "__module__", None)
    return "%s, from %s" % (thread.name, module) if module else thread.name


class Warm:
    def __init__(self, collector_module, control, status):
        self.c = collector_module
        self.control = control
        self.status = status
        self.snapshot_pid = None
        # In a process whose heap a snapshot shares (the first round once it forked the snapshot, and
        # every round process): its session, for the exit status.
        self.round_session = None

    def _close_pipes(self):
        for fd in (self.control, self.status):
            try:
                os.close(fd)
            except OSError:
                pass

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtestloop(self, session):
        round_ = None
        if self.control is not None:
            round_ = self._fork_point(session)
        if round_ is not None:
            self._become_round(session, round_)
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_unconfigure(self, config):
        yield
        if self.round_session is not None:
            # After every unconfigure hook (the collector's `done` handler is registered by now).
            atexit.register(self._leave)

    def _leave(self):
        """The last word of a process whose heap the snapshot shares, run first of its exit handlers: it
        runs the others (the collector's `done`, logging's shutdown, coverage's save among them), then
        leaves without the interpreter's finalization, which would free every object of that heap and so
        copy every page of it (0.3 s for 400 tests in a round process; in the first round, time the run
        waits for at its end)."""
        status = getattr(self.round_session, "exitstatus", 1)
        try:
            atexit.unregister(self._leave)
            atexit._run_exitfuncs()
        finally:
            for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(int(status) if status is not None else 1)

    def _fork_point(self, session):
        """Returns the round a round process runs; the first round returns None; the snapshot never
        returns."""
        control, status = self.control, self.status
        self.control = self.status = None
        why = None
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            why = "the collection failed"
        why = why or _unsafe(session.config)
        if why is None:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            # Every object alive now (the collected session, the imported suite) goes to the permanent
            # generation, in this process and so in the snapshot: a full collection in the first round
            # then skips them. Traversing them would write to every page that holds one, copying pages
            # the snapshot shares, and on a large session it costs more than the tests' own garbage
            # (rounds forked from the snapshot are frozen the same way).
            gc.freeze()
            try:
                pid = os.fork()
            except OSError as err:
                pid, why = -1, "fork failed: %s" % err
                gc.unfreeze()
            if pid == 0:
                return self._serve(control, status)  # returns only in a round process
            if pid > 0:
                self.round_session = session
        if why is not None:
            try:
                _say(status, "fallback " + why)
            except OSError:
                pass
        for fd in (control, status):
            os.close(fd)
        return None

    def _serve(self, control, status):
        """The snapshot's loop: one forked round process per line on the control pipe."""
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the round process; the binary ends the run
            self.snapshot_pid = os.getpid()
            import ctypes  # noqa: F401 (imported once here, not in every round process)

            _say(status, "snapshot %d" % os.getpid())
            _warm_drawing()
            # Every object alive now goes to the permanent generation: a collection in a round process
            # (pytest 8.4+ runs several at its end) then skips them instead of writing to every page of
            # the snapshot's heap, which would copy them all (0.2 s for a 400-test suite).
            gc.freeze()

            # A round process's exit is reported as it happens: its pidfd (Linux 5.3+) turns readable
            # then, and the run's end waits on that report. Without pidfds, every 20 ms.
            children, pidfds, buf = {}, {}, b""
            while True:
                polled = len(pidfds) < len(children)
                ready = select.select([control] + list(pidfds.values()), [], [], 0.02 if polled else None)[0]
                for pid, number in list(children.items()):
                    if not polled and pidfds[pid] not in ready:
                        continue
                    done, wstatus = os.waitpid(pid, os.WNOHANG)
                    if done:
                        del children[pid]
                        fd = pidfds.pop(pid, None)
                        if fd is not None:
                            os.close(fd)
                        if os.WIFSIGNALED(wstatus):
                            _say(status, "signal %d %d" % (number, os.WTERMSIG(wstatus)))
                        else:
                            _say(status, "exit %d %d" % (number, os.WEXITSTATUS(wstatus)))
                if control not in ready:
                    continue
                data = os.read(control, 65536)
                if not data:
                    break  # the binary is gone or done
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    command = json.loads(line.decode("utf-8"))
                    pid = os.fork()
                    if pid == 0:
                        os.close(control)
                        os.close(status)
                        for fd in pidfds.values():
                            os.close(fd)
                        return command
                    children[pid] = int(command["round"])
                    try:
                        pidfds[pid] = os.pidfd_open(pid)
                    except (AttributeError, OSError):
                        pass
                    _say(status, "started %d %d" % (children[pid], pid))
        except BaseException:
            code = 70
        os._exit(code)

    def _become_round(self, session, command):
        """Turns a fresh fork of the snapshot into rerun round ``command["round"]``."""
        config = session.config
        c = self.c
        number = int(command["round"])
        self.round_session = session
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except Exception:
            pass
        # The snapshot may have died between the fork and the prctl: then no signal would ever come.
        if os.getppid() != self.snapshot_pid:
            os._exit(70)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ[c.ROUND_ENV] = str(number)
        c._ENV.pop(c.VERDICT_ENV, None)  # the settings were judged once, in the first round
        c._ENV[c.EVENTS_ENV] = command["events"]
        c._ENV[c.SELECT_ENV] = command["select"]
        collector = c._STATE.get("collector")
        selection = c._load_selection(command["select"])
        if collector is not None:
            collector.events.close()
            collector.events = c._Events(command["events"])
            collector.events.emit("hello", {"protocol": c.PROTOCOL, "pid": os.getpid(), "warm": True})
            collector.selection = selection
            collector.worker_input = {"events": command["events"], "select": command["select"]}
            collector.pending = {}
            collector.started = time.time()
        # The session as a fresh pytest of this round would have it: only the chosen tests, nothing failed.
        items = session.items
        keep = c._narrow(items, selection)[0]
        items[:] = keep
        session.testscollected = len(keep)
        session.testsfailed = 0
        session.shouldstop = False
        session.shouldfail = False
        lf = config.pluginmanager.get_plugin("lfplugin")
        cache = getattr(config, "cache", None)
        if lf is not None and cache is not None and hasattr(lf, "lastfailed"):
            # What the earlier rounds wrote, as a fresh pytest would read it.
            try:
                lf.lastfailed = cache.get("cache/lastfailed", {})
            except Exception:
                pass
        _fresh_capture(config)
        cov = config.pluginmanager.get_plugin("_cov")
        if getattr(cov, "pid", None) is not None:
            # pytest-cov before 6 restarts coverage for a test in a process other than the session's
            # (pytest-forked), which would drop the measurement this process inherited: this process is
            # the session's now.
            cov.pid = os.getpid()
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            # "collected N items": the round's tests, as a fresh pytest of the round, which builds only
            # those, would say; the tests left out were never this round's.
            reporter.stats = {}
            reporter._numcollected = len(keep)
            reporter.currentfspath = None
            reporter.pytest_sessionstart(session)
            if hasattr(reporter, "report_collect"):
                reporter.report_collect(True)
            if getattr(reporter, "_progress_nodeids_reported", None) is not None:
                reporter._progress_nodeids_reported = set()
        if collector is not None:
            collector.pytest_collection_finish(session)


def _warm_drawing():
    """Draws one failure and throws it away, while the first round runs: what pytest builds once per
    process on its first failure drawing (inspect's map from source files to modules, over every module
    imported, tokenize's patterns, the parts of its traceback code imported on first use) is then built
    once, in the snapshot, and not again in every round process that draws a failure. Only caches of the
    standard library and of pytest change; nothing a test can see of the suite."""
    try:
        from _pytest._code import ExceptionInfo

        try:
            raise AssertionError("smart-rerun warms up pytest's traceback drawing")
        except AssertionError:
            info = ExceptionInfo.from_current()
        str(info.getrepr(style="long", showlocals=True))
        # Where pytest finds a failed statement's end it reads the source with tokenize, whose patterns
        # are compiled on first use; the drawing above did not need them.
        import io
        import tokenize

        for _ in tokenize.generate_tokens(io.StringIO("pass\n").readline):
            pass
    except Exception:
        pass


def _fresh_capture(config):
    """The round's own capture files: the snapshot's are shared, by the fork, with every other round."""
    capman = config.pluginmanager.get_plugin("capturemanager")
    current = getattr(capman, "_global_capturing", None)
    if current is None:
        return
    try:
        current.stop_capturing()
    except Exception:
        pass
    capman._global_capturing = None
    capman.start_global_capturing()
    capman.suspend_global_capture()


def register(config, collector_module, value):
    """Called by the collector in the first round's pytest_configure."""
    try:
        control, status = (int(v) for v in value.split(","))
        for fd in (control, status):
            os.set_inheritable(fd, False)  # not to the subprocesses tests start
    except (ValueError, OSError):
        return
    config.pluginmanager.register(Warm(collector_module, control, status), "smart_rerun_warm")
