"""The `pytest --smart-rerun` door into smart-rerun.

pytest loads this module through the ``pytest11`` entry point (plugin name ``smart_rerun``). It registers
the ``--smart-rerun*`` options in a "smart-rerun" group, the ``smart_rerun*`` ini keys and the
``smart_rerun`` marker, and nothing else happens in a plain pytest run. When smart-rerun is asked for, it
hands the whole run to the ``smart-rerun`` binary that came with this package, before any conftest is
imported and before any test is collected: the binary runs the same pytest command in rounds (reruns in
fresh processes), reports, and exits with pytest's exit codes. Retrying is never done here.

smart-rerun is asked for by any of:

- ``--smart-rerun`` or any ``--smart-rerun-*`` option on the command line (or in ``addopts``);
- a ``smart_rerun*`` key in the pytest configuration file (or ``-o smart_rerun_max=3``);
- a ``SMART_RERUN*`` settings variable in the environment (``SMART_RERUN_MAX=3``).

Otherwise a plain run retries only the tests marked ``@pytest.mark.smart_rerun`` that failed, through the
binary, after pytest's summary (see ``_retry``); a run in which no marked test failed costs nothing.
``-p no:smart_rerun`` turns the plugin off. Inside one of the binary's rounds (its collector plugin is
loaded) this plugin stays inert, so the round is a plain pytest run.
"""

import argparse
import os
import sys

import pytest

# One row per setting of the binary (ini key, the binary's flag, kind, help), generated from its settings
# table: importing it costs nothing, asking the binary would cost a process at every pytest start.
from ._settings import KEYS

MARKER_LINE = (
    "smart_rerun(max=None, delay=None, backoff=None, errors=None, flaky=None): "
    "smart-rerun's retry policy for this test"
)

# The module name under which the binary's collector plugin is loaded in each of its rounds.
COLLECTOR_MODULE = "_smart_rerun_collector"
# Where the binary is, when it is not where pip put it (a development build, say).
BINARY_ENV = "SMART_RERUN_BIN"
# pytest runs that only inform: they are never handed over.
_INFORMATIVE = ("help", "version", "collectonly", "showfixtures", "show_fixtures_per_test", "markers")


def _option(ini):
    return "--" + ini.replace("_", "-")


def _negation(ini):
    return "--smart-rerun-no-" + ini[len("smart_rerun_"):].replace("_", "-")


def pytest_addoption(parser, pluginmanager):
    config = pluginmanager.get_plugin("pytestconfig")
    if config is not None:
        _early_hand_over(config)
    group = parser.getgroup(
        "smart-rerun",
        "smart-rerun: rerun failed tests in fresh pytest processes (each switch has a --smart-rerun-no-NAME "
        "form that turns it off)",
    )
    for ini, _flag, kind, help_text in KEYS:
        # argparse %-formats an option's help (for %(default)s); a literal % in the text must be doubled.
        option_help = help_text.replace("%", "%%")
        if kind == "bool":
            group.addoption(_option(ini), action="store_const", const="true", dest=ini, default=None, help=option_help)
            if ini != "smart_rerun":
                group.addoption(_negation(ini), action="store_const", const="false", dest=ini, help=argparse.SUPPRESS)
        else:
            metavar = "TOKEN" if kind == "secret" else kind
            group.addoption(_option(ini), action="store", dest=ini, default=None, metavar=metavar, help=option_help)
        parser.addini(ini, help_text, default=None)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.addinivalue_line("markers", MARKER_LINE)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    # A wrapper that runs first: before pytest's capture starts and before any conftest is imported.
    wanted = _wanted(early_config)
    if wanted == HAND_OVER:
        _hand_over(early_config)
    elif wanted == MARKED_ONLY:
        from pytest_smart_rerun._retry import MarkedRetry

        retry = MarkedRetry(early_config, _pytest_command(list(early_config.invocation_params.args)), _find_binary)
        early_config.pluginmanager.register(retry, "smart_rerun_marked_retry")
    yield


HAND_OVER = "hand over"
MARKED_ONLY = "marked only"


def _wanted(config):
    """HAND_OVER when smart-rerun was asked for; MARKED_ONLY for a plain run that may retry marked tests."""
    if COLLECTOR_MODULE in sys.modules or hasattr(config, "workerinput"):
        return None
    namespace = config.known_args_namespace
    if any(getattr(namespace, name, False) for name in _INFORMATIVE):
        return None
    explicit = bool(_option_values(namespace))
    if not _started_from_command_line(config):
        # pytest.main() from Python code (an IDE, pytester): the binary cannot take this process over.
        if explicit:
            raise pytest.UsageError(
                "--smart-rerun hands the run to the smart-rerun binary, which needs pytest started from "
                "the command line (`pytest ...`, `python -m pytest ...`), not pytest.main() in Python code"
            )
        return None
    if explicit or _ini_names(config) or any(os.environ.get(ini.upper()) for ini, _, _, _ in KEYS):
        return HAND_OVER
    return MARKED_ONLY


def _option_values(namespace):
    return [(ini, flag, kind, getattr(namespace, ini)) for ini, flag, kind, _ in KEYS if getattr(namespace, ini, None) is not None]


def _ini_names(config):
    inicfg = getattr(config, "_inicfg", None)
    if inicfg is None:
        inicfg = getattr(config, "inicfg", None) or {}
    names = {name for name in inicfg if name.startswith("smart_rerun")}
    for override in getattr(config.known_args_namespace, "override_ini", None) or ():
        name = override.split("=", 1)[0].strip()
        if name.startswith("smart_rerun"):
            names.add(name)
    return names


def _hand_over(config):
    _exec_binary(_option_values(config.known_args_namespace), _pytest_command(list(config.invocation_params.args)))


def _exec_binary(values, command):
    binary = _find_binary()
    argv = [binary, "run", "--from-pytest"]
    env = dict(os.environ)
    for ini, flag, kind, value in values:
        if kind == "secret":
            # Not on the binary's command line: the variable outranks the ini key, as the option does.
            env[ini.upper()] = value
        else:
            argv.append("%s=%s" % (flag, value))
    argv.append("--")
    argv.extend(command)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        # The binary takes this process's place: signals (Ctrl-C, a CI's cancellation) reach it directly.
        os.execve(binary, argv, env)
    import subprocess

    try:
        code = subprocess.call(argv, env=env)
    except KeyboardInterrupt:
        code = 2
    raise SystemExit(code)


# Arguments that make a pytest run informative only (never handed over); the early hand-over leaves runs
# with any of them to the regular path.
_EARLY_STOPPERS = ("-h", "--help", "-V", "--version", "--co", "--collect-only", "--collectonly", "--fixtures",
                   "--funcargs", "--fixtures-per-test", "--markers", "--")


def _early_hand_over(config):
    """Hands over while pytest is still loading its plugins, when the arguments say so without doubt.

    Called from this plugin's pytest_addoption, which pytest calls as it registers the plugin: before it
    imports the environment's other plugins and parses the options, which the regular path
    (pytest_load_initial_conftests) waits for. The ini file is read and addopts known by then. Arguments
    this cannot read with certainty (an unknown --smart-rerun-* option, a bool option given a value) are
    left to the regular path, which sees what pytest sees.
    """
    if COLLECTOR_MODULE in os.environ.get("PYTEST_PLUGINS", "") or COLLECTOR_MODULE in sys.modules:
        return
    if not _started_from_command_line(config):
        return
    import shlex

    try:
        addopts = shlex.split(os.environ.get("PYTEST_ADDOPTS", "")) + list(config.getini("addopts"))
    except (ValueError, KeyError):
        return
    args = addopts + list(config.invocation_params.args)
    by_option = {_option(ini): (ini, flag, kind) for ini, flag, kind, _ in KEYS}
    negations = {_negation(ini): (ini, flag, kind) for ini, flag, kind, _ in KEYS if kind == "bool"}
    values = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in _EARLY_STOPPERS:
            return
        if arg == "-p":
            i += 1  # its value is a plugin name, not an option
        elif name.startswith("--smart-rerun"):
            if name in by_option:
                ini, flag, kind = by_option[name]
                if kind == "bool":
                    if eq:
                        return
                    value = "true"
                elif not eq:
                    if i + 1 >= len(args):
                        return
                    i += 1
                    value = args[i]
            elif name in negations and not eq:
                ini, flag, kind = negations[name]
                value = "false"
            else:
                return
            values[ini] = (ini, flag, kind, value)
        i += 1
    if values or _ini_names(config) or any(os.environ.get(ini.upper()) for ini, _, _, _ in KEYS):
        _exec_binary(list(values.values()), _pytest_command(list(config.invocation_params.args)))


def _started_from_command_line(config):
    return tuple(config.invocation_params.args) == tuple(sys.argv[1:])


def _pytest_command(args):
    """The command the binary runs each round: this interpreter, running pytest as the user did."""
    orig = getattr(sys, "orig_argv", None)
    if orig and len(orig) > len(args) and list(orig[len(orig) - len(args) :]) == args:
        # Python 3.10+: keep the interpreter's options (-X dev, -W error) and how pytest was started.
        head = list(orig[1 : len(orig) - len(args)])
        if len(head) >= 2 and head[-2] == "-m" and head[-1] in ("pytest", "py.test"):
            return [sys.executable] + head + args
        if head and os.name == "posix" and os.path.basename(head[-1]) in ("pytest", "py.test"):
            return [sys.executable] + head + args
    return [sys.executable, "-m", "pytest"] + args


def _find_binary():
    exe = "smart-rerun.exe" if os.name == "nt" else "smart-rerun"
    override = os.environ.get(BINARY_ENV)
    if override:
        if not os.path.isfile(override):
            raise pytest.UsageError("%s=%s: no such file (it should name the smart-rerun binary)" % (BINARY_ENV, override))
        return override
    candidates = [os.path.join(os.path.dirname(sys.executable), exe)]
    try:
        import sysconfig

        candidates.append(os.path.join(sysconfig.get_path("scripts"), exe))
        user_scheme = "nt_user" if os.name == "nt" else "posix_user"
        candidates.append(os.path.join(sysconfig.get_path("scripts", user_scheme), exe))
    except (KeyError, ValueError):
        pass
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    recorded = _recorded_binary(exe)
    if recorded:
        return recorded
    import shutil

    found = shutil.which(exe)
    if found:
        return found
    raise pytest.UsageError(
        "the smart-rerun binary that comes with pytest-smart-rerun was not found (looked in %s and on PATH); "
        "reinstall the package (pip install --force-reinstall pytest-smart-rerun) or set %s to its path"
        % (", ".join(candidates), BINARY_ENV)
    )


def _recorded_binary(exe):
    """The binary where this distribution's RECORD says pip put it (a --prefix or --target install)."""
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7
        return None
    try:
        files = metadata.distribution("pytest-smart-rerun").files or ()
    except metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == exe:
            path = str(entry.locate())
            if os.path.isfile(path):
                return path
    return None
