"""smart-rerun's collector: a pytest plugin embedded in the smart-rerun binary.

The binary puts this file on PYTHONPATH and loads it with PYTEST_PLUGINS, so it works under any wrapper
(`uv run pytest`, `poetry run pytest`, tox with passenv). It is the hands, not the brain: it observes the
session and writes one JSON object per line to the file named by SMART_RERUN_EVENTS, and on rerun rounds
it narrows the session to the tests the binary selected (SMART_RERUN_SELECT). It never decides to rerun.
A rerun round's pytest may be started before its tests are known (SMART_RERUN_HOLD): it then waits at its
first hook until the binary releases it. These variables are taken out of the environment on import (see
_take_environment), so a pytest that a test runs is left alone.

Every line is written with a single os.write on an O_APPEND descriptor, so a crash (segfault, os._exit,
SIGKILL) loses nothing already reported. Supports pytest 7.0+ and Python 3.8+ syntax: old-style
``hookwrapper=True`` wrappers only.
"""

import atexit
import json
import os
import sys
import time
import types
import warnings

import pytest

PROTOCOL = 1
EVENTS_ENV = "SMART_RERUN_EVENTS"
SELECT_ENV = "SMART_RERUN_SELECT"
ROUND_ENV = "SMART_RERUN_ROUND"
# The binary validates the ini values and markers once they are collected; the collector waits for its
# verdict (a file it writes atomically) before any test runs, and stops with exit 4 on invalid settings.
VERDICT_ENV = "SMART_RERUN_VERDICT"
# "config": report the session's ini values, then stop before collecting (`smart-rerun config`).
MODE_ENV = "SMART_RERUN_MODE"
# A prestarted rerun round: a pipe from the binary. pytest, started while the previous round ran, waits at
# its first hook (before any conftest) for RELEASE, once the selection is written; end of file means leave.
HOLD_ENV = "SMART_RERUN_HOLD"
RELEASE = b"r"
WARM_ENV = "SMART_RERUN_WARM"  # the first round's two pipes for warm rounds (_smart_rerun_warm.py)
VERDICT_TIMEOUT = 120.0
# What xdist workers get instead of the environment: {"events": path, "select": path or None}.
WORKERINPUT_KEY = "smart_rerun"

# Every ini key smart-rerun understands, with its help: the binary writes this module beside this one for
# each run, from its settings table (registering them keeps `--strict-config` projects working and lets the
# binary read them through pytest's own configuration discovery, getini).
from _smart_rerun_keys import INI_KEYS  # noqa: E402

# A failure's description, and its rendering deferred until the binary says whether it stays failed.
import _smart_rerun_render as _render  # noqa: E402

MARKER_LINE = (
    "smart_rerun(max=None, delay=None, backoff=None, errors=None, flaky=None): "
    "smart-rerun's retry policy for this test"
)
# smart-rerun reads pytest-rerunfailures' marker itself. With that plugin disabled (`-p no:rerunfailures`,
# as smart-rerun advises) or uninstalled, --strict-markers must still accept the marker.
FLAKY_MARKER_LINE = (
    "flaky(reruns=1, reruns_delay=0): rerun this test when it fails (read by smart-rerun; "
    "pytest-rerunfailures' marker)"
)

# Text fields are capped so one test printing megabytes cannot blow up the binary's memory; the binary's
# renderers apply their own, smaller, platform budgets.
TEXT_CAP = 256 * 1024

_EXC_ATTR = "smart_rerun_exc"


def _cap(text):
    if text is None:
        return None
    if not isinstance(text, str):
        text = str(text)
    if len(text) > TEXT_CAP:
        dropped = len(text) - TEXT_CAP
        text = text[:TEXT_CAP] + "\n[smart-rerun: %d more characters cut]" % dropped
    return text


# json.dumps builds an encoder on every call that passes options; building it once saves a few µs per
# event, and the two events every test produces are formatted directly with the same string escaping
# (measured with bench/overhead.py: the encoding was most of the collector's per-test cost).
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_json_str = getattr(json.encoder, "encode_basestring", None) or (lambda s: json.dumps(s, ensure_ascii=False))


class _Events:
    """Appends one JSON object per line to the events file."""

    def __init__(self, path):
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def emit(self, event, payload):
        payload["event"] = event
        self.write(_ENCODE(payload) + "\n")

    def write(self, line):
        # Lone surrogates (undecodable bytes in test output) cannot be encoded; replace them rather
        # than lose the whole event.
        data = line.encode("utf-8", "replace")
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def close(self):
        try:
            os.close(self._fd)
        except OSError:
            pass


def _marker_kwargs(item, name):
    found = []
    for mark in item.iter_markers(name=name):
        kwargs = {}
        for key, value in mark.kwargs.items():
            kwargs[key] = value if isinstance(value, (str, int, float, bool, list, tuple, type(None))) else repr(value)
        entry = {"kwargs": kwargs}
        if mark.args:
            entry["args"] = [repr(a) for a in mark.args]
        found.append(entry)
    return found


def _is_rerun(rep):
    """pytest-rerunfailures' in-process retries report the outcome "rerun": still a failed attempt."""
    return getattr(rep, "outcome", None) == "rerun"


def _outcome_of(phases):
    """One outcome for a test from its phase reports, as pytest's terminal summary counts them."""
    outcome = "passed"
    for rep in phases:
        if rep.failed or _is_rerun(rep):
            if rep.when == "call":
                return "failed"
            return "error"
        if rep.skipped:
            outcome = "xfailed" if getattr(rep, "wasxfail", None) is not None else "skipped"
        elif rep.when == "call" and getattr(rep, "wasxfail", None) is not None:
            outcome = "xpassed"
    return outcome


_PHASES = ("setup", "call", "teardown")


def _crash_failure(rep):
    """The failure xdist reports when a worker dies mid-test: a report with the phase ``???`` and a bare
    string for longrepr. Told as the crash it is, the way smart-rerun tells a pytest that died unassisted."""
    node = getattr(rep, "node", None)
    worker = getattr(getattr(node, "gateway", None), "id", None)
    if worker:
        message = "worker %s crashed while running this test" % worker
    else:
        message = "a pytest worker crashed while running this test"
    text = getattr(rep, "longreprtext", None) or (str(rep.longrepr) if rep.longrepr is not None else None)
    return {
        "phase": "crash",
        "type": "smart_rerun.PytestCrash",
        "mro": [],
        "message": message,
        "crash_path": None,
        "crash_line": None,
        "test_line": None,
        "traceback": _cap(text),
        "sections": [],
    }


def _skip_reason(rep):
    longrepr = rep.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        # pytest prefixes the reason of pytest.skip() and the skip marker; its summary strips it, so do we.
        if reason.startswith("Skipped: "):
            reason = reason[len("Skipped: "):]
        return reason
    wasxfail = getattr(rep, "wasxfail", None)
    if wasxfail:
        return str(wasxfail)
    return None


class Collector:
    def __init__(self, config, events, selection, events_path, select_path):
        self.config = config
        self.events = events
        self.selection = selection
        # Passed on to xdist workers (pytest_configure_node).
        self.worker_input = {"events": events_path, "select": select_path, "verdict": _ENV.get(VERDICT_ENV)}
        self.is_worker = hasattr(config, "workerinput")
        self.pending = {}
        self.started = time.time()
        self.session = None
        self.wanted_names = None if selection is None else _name_prefixes(selection["nodeids"])

    # -- selection -----------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makeitem(self, collector, name, obj):
        # A rerun round builds only what it runs: a function or class no selected test lives in is not
        # collected at all (building items costs more than running trivial tests: collecting the 2,000
        # tests of bench/run.py's `flaky` suite took 0.75 s, 0.4 ms a test). What this lets through is
        # narrowed again by pytest_collection_modifyitems.
        # Only plain functions and classes are skipped: other objects go to the hook's other
        # implementations, which may build items under names of their own.
        if self.wanted_names is None or "%s::%s" % (collector.nodeid, name) in self.wanted_names:
            return None
        if isinstance(obj, (types.FunctionType, type)):
            return []
        return None

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        if self.selection is None:
            return
        keep, drop = _narrow(items, self.selection)
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        """A test new to the history runs ``repeat`` times in this round, each run a whole protocol of
        its own (set up, call, tear down, reported), as pytest-rerunfailures reruns an item. Each run
        but the last is torn down towards the real next item, so its function-scoped fixtures are set
        up afresh for the next run."""
        times = 0 if self.selection is None else self.selection["repeat"].get(item.nodeid, 0)
        if times <= 1:
            return None
        from _pytest.runner import runtestprotocol

        for _ in range(times):
            item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
            runtestprotocol(item, nextitem=nextitem, log=True)
            item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
            if item.session.shouldstop or item.session.shouldfail:
                break
        return True

    # -- observation ---------------------------------------------------------------------------

    def pytest_collection_finish(self, session):
        if self.is_worker and self.config.workerinput.get("workerid") != "gw0":
            return
        files, file_index, rows, markers = [], {}, [], {}
        for idx, item in enumerate(session.items):
            path = str(getattr(item, "path", None) or item.fspath)
            fi = file_index.get(path)
            if fi is None:
                fi = file_index[path] = len(files)
                files.append(path)
            try:
                line = item.location[1]
                line = None if line is None else line + 1
            except Exception:
                line = None
            rows.append([item.nodeid, fi, line])
            found = _marker_kwargs(item, "smart_rerun")
            flaky = _marker_kwargs(item, "flaky")
            if found or flaky:
                markers[str(idx)] = {"smart_rerun": found, "flaky": flaky}
        self.events.emit("collected", {"files": files, "items": rows, "markers": markers})
        if not self.is_worker:
            _await_verdict()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        # xdist's controller, for each worker it starts: the environment no longer names the files.
        node.workerinput[WORKERINPUT_KEY] = self.worker_input

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        # Under xdist the controller waits for the verdict on gw0's collection, before it schedules any
        # test: a pytest.exit in a worker does not stop the run (the controller waits for it forever).
        if getattr(getattr(node, "gateway", None), "id", None) == "gw0":
            _await_verdict()

    def pytest_collectreport(self, report):
        if self.is_worker or not report.failed:
            return
        self.events.emit(
            "collect_error",
            {"nodeid": report.nodeid, "traceback": _cap(getattr(report, "longreprtext", None) or str(report.longrepr))},
        )

    def pytest_runtest_logstart(self, nodeid, location):
        if not self.is_worker:
            self.events.write('{"nodeid":%s,"time":%r,"event":"start"}\n' % (_json_str(nodeid), time.time()))

    def pytest_runtest_logreport(self, report):
        if self.is_worker:
            return
        self.pending.setdefault(report.nodeid, []).append(report)

    def pytest_runtest_logfinish(self, nodeid, location):
        if not self.is_worker:
            self._finish(nodeid)

    def _finish(self, nodeid):
        phases = self.pending.pop(nodeid, None)
        if not phases:
            return
        outcome = _outcome_of(phases)
        duration = float(sum(getattr(r, "duration", 0.0) or 0.0 for r in phases))
        worker = getattr(phases[0], "node", None)
        if outcome == "passed" and worker is None:
            # The common case, formatted directly: nothing but these fields to report.
            self.events.write(
                '{"nodeid":%s,"outcome":"passed","duration":%r,"stop":%r,"event":"test"}\n'
                % (_json_str(nodeid), duration, time.time())
            )
            return
        payload = {"nodeid": nodeid, "outcome": outcome, "duration": duration, "stop": time.time()}
        if worker is not None and getattr(worker, "gateway", None) is not None:
            payload["worker"] = worker.gateway.id
        failures = []
        for rep in phases:
            if rep.failed or _is_rerun(rep):
                failures.append(self._failure(rep))
            elif rep.skipped and outcome in ("skipped", "xfailed"):
                reason = _skip_reason(rep)
                if reason:
                    payload["reason"] = _cap(reason)
            elif rep.when == "call" and outcome == "xpassed":
                reason = _skip_reason(rep)
                if reason:
                    payload["reason"] = _cap(reason)
        if failures:
            payload["failures"] = failures
        self.events.emit("test", payload)

    def _failure(self, rep):
        if rep.when not in _PHASES:
            return _crash_failure(rep)
        exc = getattr(rep, _EXC_ATTR, None) or {}
        crash = getattr(getattr(rep, "longrepr", None), "reprcrash", None)
        message = exc.get("message")
        if message is None and crash is not None:
            message = crash.message
        sections = []
        for title, content in getattr(rep, "sections", ()) or ():
            sections.append([title, _cap(content)])
        text = _render.report_text(rep)
        return {
            "phase": rep.when,
            "type": exc.get("type"),
            "mro": exc.get("mro") or [],
            "message": _cap(message),
            "crash_path": exc.get("crash_path") or (str(crash.path) if crash is not None else None),
            "crash_line": exc.get("crash_line") or (crash.lineno if crash is not None else None),
            "test_line": exc.get("test_line"),
            "traceback": _cap(text),
            "sections": sections,
        }

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        if call.excinfo is None:
            return
        report = outcome.get_result()
        if not report.failed:
            return
        try:
            path = str(getattr(item, "path", None) or item.fspath)
            setattr(report, _EXC_ATTR, _render.describe_exception(call.excinfo, path))
        except Exception:
            pass

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        if self.is_worker:
            return
        self.session = session
        # Reports that never got a logfinish (an xdist worker crash) still count. A test whose phases
        # stopped short without a failure (KeyboardInterrupt mid-call) did not pass: it never finished.
        for nodeid in list(self.pending):
            phases = self.pending[nodeid]
            if any(r.failed for r in phases) or any(r.when == "teardown" for r in phases):
                self._finish(nodeid)
            else:
                del self.pending[nodeid]
        self.events.emit(
            "session_finish",
            {
                "exitstatus": int(exitstatus),
                "shouldstop": _cap(session.shouldstop) if session.shouldstop else None,
                "shouldfail": _cap(session.shouldfail) if session.shouldfail else None,
                "testsfailed": session.testsfailed,
                "duration": time.time() - self.started,
            },
        )

    def pytest_keyboard_interrupt(self, excinfo):
        # Also called for pytest.exit(): a deliberate stop, reported by session_finish, not an interrupt.
        if not self.is_worker and excinfo.errisinstance(KeyboardInterrupt):
            self.events.emit("interrupted", {"message": _cap(excinfo.exconly())})


def _name_prefixes(nodeids):
    """Every collector-level prefix of the selected node ids: ``f.py::C`` and ``f.py::C::test`` for
    ``f.py::C::test[1]``. The parameter part may itself hold ``::`` or ``[``, so it is cut first; the file
    part ends at the first ``::``."""
    prefixes = set()
    for nodeid in nodeids:
        file_end = nodeid.find("::")
        if file_end < 0:
            continue
        rest = nodeid[file_end + 2 :]
        bracket = rest.find("[")
        if bracket >= 0:
            rest = rest[:bracket]
        prefix = nodeid[:file_end]
        for part in rest.split("::"):
            prefix = "%s::%s" % (prefix, part)
            prefixes.add(prefix)
    return frozenset(prefixes)


def _narrow(items, selection):
    """The items ``selection`` names, and the items it leaves out."""
    wanted = selection["nodeids"]
    keep, drop = [], []
    for item in items:
        (keep if item.nodeid in wanted else drop).append(item)
    return keep, drop


def _load_selection(path):
    with open(path, "r", encoding="utf-8") as fh:
        data = json.load(fh)
    return {
        "files": data.get("files") or [],
        "nodeids": frozenset(data.get("nodeids") or ()),
        "serial": bool(data.get("serial")),
        "repeat": {str(k): int(v) for k, v in (data.get("repeat") or {}).items()},
    }


def _inside(path, config):
    """Whether ``path`` lies under the rootdir. pytest names a test file outside the rootdir (``-c ci/pytest.ini``,
    ``--rootdir elsewhere``) relative to the command-line path that holds it, so narrowing the arguments to
    that file would rename its tests; such rounds keep the user's arguments and only deselect."""
    root = str(config.rootpath if hasattr(config, "rootpath") else config.rootdir)
    try:
        return os.path.commonpath([os.path.abspath(path), os.path.abspath(root)]) == os.path.abspath(root)
    except ValueError:  # different drives on Windows
        return False


def _await_verdict():
    path = _ENV.get(VERDICT_ENV)
    if not path:
        return
    deadline = time.monotonic() + VERDICT_TIMEOUT
    pause = 0.0005
    while time.monotonic() < deadline:
        try:
            with open(path, "r", encoding="utf-8") as fh:
                verdict = json.load(fh)
        except (OSError, ValueError):
            # The binary answers within a millisecond or two of the collection; polling that often costs
            # a failed open() per poll, and every test of the run waits on this.
            time.sleep(pause)
            pause = min(pause * 2, 0.002)
            continue
        if verdict.get("abort"):
            pytest.exit("smart-rerun: invalid settings (listed below); no test was run", returncode=4)
        return
    # The binary is gone or stuck: run the tests rather than hang CI.


def _ini_or_none(config, name):
    try:
        value = config.getini(name)
    except (ValueError, KeyError):
        return None
    return str(value) if value else None


def _rerun_plugins(config):
    """In-process rerun plugins that are loaded, and whether they are switched on for the whole run."""
    found = {}
    pm = config.pluginmanager
    if pm.hasplugin("rerunfailures"):
        # --reruns, --force-reruns, or the `reruns` ini key (pytest-rerunfailures 14+).
        reruns = getattr(config.option, "reruns", None) or getattr(config.option, "force_reruns", None)
        if not reruns:
            try:
                reruns = int(config.getini("reruns") or 0)
            except Exception:
                reruns = 0
        found["pytest-rerunfailures"] = {"reruns": reruns or 0}
    if pm.hasplugin("flaky"):
        found["flaky"] = {"force_flaky": bool(getattr(config.option, "force_flaky", False))}
    for name in ("pytest_retry", "retry"):
        if pm.hasplugin(name):
            found["pytest-retry"] = {"retries": getattr(config.option, "retries", None) or 0}
            break
    return found


_STATE = {}


def _ini_value(config, name):
    """An ini key's value as written, or None when it is not set anywhere."""
    try:
        with warnings.catch_warnings():
            # pytest 9 deprecates non-string values for string keys ([tool.pytest.ini_options] lists).
            warnings.simplefilter("ignore")
            value = config.getini(name)
    except (ValueError, KeyError):
        return None
    except Exception:
        # pytest 9 checks native TOML values (pytest.toml, [tool.pytest]) against the registered type
        # and raises a UsageError for `smart_rerun_max = 3` or `smart_rerun = true`. Take the value as
        # written; the binary validates it and names the file and line.
        value = _raw_ini(config, name)
    if value == "":
        # pytest 7 returns "" for an unset key even when registered with default=None. There
        # `config.inicfg` is a plain dict of the keys the ini file sets (pytest 9 turned it into a
        # deprecated property, hence vars()); -o overrides are not in it.
        inicfg = vars(config).get("inicfg")
        if isinstance(inicfg, dict) and name not in inicfg:
            overrides = getattr(config.option, "override_ini", None) or ()
            if not any(str(o).split("=", 1)[0].strip() == name for o in overrides):
                return None
    return _as_text(value)


def _ini_overrides(config):
    """The smart_rerun_* keys set with ``-o KEY=VALUE`` (in the command or in addopts)."""
    names = set(name for name, _ in INI_KEYS)
    found = []
    for item in getattr(config.option, "override_ini", None) or ():
        name = str(item).split("=", 1)[0].strip()
        if name in names and name not in found:
            found.append(name)
    return found


def _raw_ini(config, name):
    """The value the configuration file sets for ``name``, untyped (pytest 9: ``_inicfg`` holds
    ConfigValue objects; pytest 7: ``inicfg`` holds strings)."""
    attrs = vars(config)
    cfg = attrs.get("_inicfg", attrs.get("inicfg"))
    if not isinstance(cfg, dict) or name not in cfg:
        return None
    value = cfg[name]
    return getattr(value, "value", value)


def _as_text(value):
    """TOML values as the text an ini file would hold: true/false, 3, and lists joined with commas."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_as_text(v) or "" for v in value)
    return str(value)


def pytest_addoption(parser):
    for name, help_text in INI_KEYS:
        parser.addini(name, help_text, default=None)


def _hold():
    """Waits, in a prestarted round, until the binary has chosen the round's tests.

    The interpreter, pytest and the installed plugins are imported by now and the command line is parsed
    (most of a rerun round's start-up); no conftest has been read, no test module imported, and nothing
    printed. The wait is a blocking read of the binary's pipe: no CPU while round 1 runs beside it, and a
    binary killed without a word closes the pipe, so nothing is left waiting."""
    fd = _ENV.pop(HOLD_ENV, None)
    if fd is None:
        return
    try:
        fd = int(fd)
        try:
            word = os.read(fd, 1)
        finally:
            os.close(fd)
    except KeyboardInterrupt:
        # A Ctrl-C in the terminal reaches this process too; the binary reports the interrupt.
        os._exit(2)
    except (ValueError, OSError):
        word = b""
    if word != RELEASE:
        # Not needed: nothing was printed or written, so leave without pytest's exit path (no summary, no
        # cache).
        os._exit(0)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    _hold()
    # A rerun round must add to the first round's coverage data, not erase it. pytest-cov reads this
    # option in its own (tryfirst) hook of the same name, which runs after ours: PYTEST_PLUGINS loads
    # this module after the setuptools entry points, and pluggy calls later registrations first.
    if os.environ.get(ROUND_ENV, "1") != "1":
        namespace = early_config.known_args_namespace
        if getattr(namespace, "cov_source", None):
            namespace.cov_append = True


def _die_with_parent():
    """An xdist worker of smart-rerun's pytest gets SIGKILL when that pytest dies (Linux), as the pytest
    gets it when smart-rerun dies: no worker outlives a killed run."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:
        return
    if os.getppid() != parent:  # the controller died before the signal was armed
        os._exit(70)


def pytest_configure(config):
    config.addinivalue_line("markers", MARKER_LINE)
    if not (config.pluginmanager.hasplugin("rerunfailures") or config.pluginmanager.hasplugin("flaky")):
        config.addinivalue_line("markers", FLAKY_MARKER_LINE)
    is_worker = hasattr(config, "workerinput")
    if is_worker:
        given = config.workerinput.get(WORKERINPUT_KEY)
        if not given:
            return
        _die_with_parent()
        events_path = "%s.%s" % (given["events"], config.workerinput.get("workerid", "worker"))
        select_path = given.get("select")
    else:
        # The first pytest of this process is smart-rerun's; another one a test runs in-process (pytester)
        # loads this plugin again, and must leave the round's files alone.
        if _STATE.get("configured"):
            return
        _STATE["configured"] = True
        events_path = _ENV.get(EVENTS_ENV)
        select_path = _ENV.get(SELECT_ENV)
    if not events_path:
        return
    events = _Events(events_path)
    selection = None
    if select_path:
        selection = _load_selection(select_path)
        files = [f for f in selection["files"] if os.path.exists(f)]
        if files and all(_inside(f, config) for f in files):
            config.args[:] = files
        if selection["serial"] and not is_worker:
            # A rerun round of a few tests should not pay for spawning xdist workers. xdist decides in
            # its trylast pytest_configure whether to distribute, from these two options.
            if hasattr(config.option, "dist"):
                config.option.dist = "no"
            if hasattr(config.option, "tx"):
                config.option.tx = []
            if hasattr(config.option, "numprocesses"):
                config.option.numprocesses = 0
    # The user's --junitxml is taken over: no round writes it (a rerun round would overwrite the first
    # round's file); the binary writes the merged, flaky-aware report there. junitxml's own
    # pytest_configure, which reads this option, runs after this tryfirst hook.
    junitxml = getattr(config.option, "xmlpath", None)
    if junitxml:
        config.option.xmlpath = None
    collector = Collector(config, events, selection, events_path, select_path)
    _STATE["collector"] = collector
    config.pluginmanager.register(collector, "smart_rerun_collector_impl")
    verdict = given.get("verdict") if is_worker else _ENV.get(VERDICT_ENV)
    if verdict:
        worker = config.workerinput.get("workerid", "worker") if is_worker else None
        _render.register(config, _Events(given["events"]) if is_worker else events, verdict, worker, _cap)
    if is_worker:
        return
    if _ENV.get(WARM_ENV):
        __import__("_smart_rerun_warm").register(config, sys.modules[__name__], _ENV.pop(WARM_ENV))
    ini = {}
    for name, _ in INI_KEYS:
        ini[name] = _ini_value(config, name)
    plugins = sorted(
        {
            name
            for name, _ in config.pluginmanager.list_name_plugin()
            if name and not name.startswith("_") and not name.isdigit()
        }
    )
    events.emit(
        "session_start",
        {
            "protocol": PROTOCOL,
            "round": int(os.environ.get(ROUND_ENV, "1")),
            "pid": os.getpid(),
            "pytest_version": pytest.__version__,
            "python_version": "%d.%d.%d" % sys.version_info[:3],
            "python_executable": sys.executable,
            "rootdir": str(config.rootpath if hasattr(config, "rootpath") else config.rootdir),
            "inifile": str(config.inipath) if getattr(config, "inipath", None) else None,
            "invocation_dir": str(getattr(config, "invocation_params").dir),
            "args": [str(a) for a in config.invocation_params.args],
            "ini": ini,
            "ini_overrides": _ini_overrides(config),
            "plugins": plugins,
            "numprocesses": getattr(config.option, "numprocesses", None) or 0,
            "rerun_plugins": _rerun_plugins(config),
            "junitxml": str(junitxml) if junitxml else None,
            "junit_suite_name": _ini_or_none(config, "junit_suite_name"),
        },
    )
    if _ENV.get(MODE_ENV) == "config":
        pytest.exit("smart-rerun: configuration read", returncode=0)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    collector = _STATE.get("collector")
    if collector is None or collector.config is not config:
        return
    del _STATE["collector"]
    if collector.is_worker:
        collector.events.close()
        return
    # Registered now, so it runs first of the exit handlers: after pytest's last output (its clean-up
    # writes back what global capture held), before the interpreter's own finalisation, which with a large
    # suite's objects takes a while (0.5 s for 2,000 tests). The binary may go on with the next round
    # from this line on.
    atexit.register(_done, collector)


def _done(collector):
    # What pytest's main() returns, final once the session has finished (a plugin may change it in its
    # own sessionfinish); null when the session never finished, and then the binary waits for the exit.
    exitstatus = getattr(collector.session, "exitstatus", None)
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    collector.events.emit("done", {"exitstatus": None if exitstatus is None else int(exitstatus)})
    collector.events.close()


# smart-rerun's settings for this pytest, taken out of the environment at import: a pytest that a test starts
# (in a subprocess, or in-process with pytester) must not write into this round's events, read its
# selection or wait on its pipe. xdist workers get what they need through xdist (WORKERINPUT_KEY).
_ENV = {}


def _take_environment():
    for key in (EVENTS_ENV, SELECT_ENV, VERDICT_ENV, MODE_ENV, HOLD_ENV, WARM_ENV):
        value = os.environ.pop(key, None)
        if value is not None:
            _ENV[key] = value


def _announce():
    # Written at import time, before pytest parses its arguments: tells the binary the environment
    # reached Python even if pytest then stops on a usage error.
    path = _ENV.get(EVENTS_ENV)
    if path:
        events = _Events(path)
        events.emit("hello", {"protocol": PROTOCOL, "pid": os.getpid()})
        events.close()


_take_environment()
_announce()
