"""The example classifier's rules, shared by the MCP server (server.py) and the plain HTTP one (http_server.py).

A failure arrives as smart-rerun sends it: node id, fingerprint, exception type and bases, message, trimmed
(and scrubbed) traceback, earlier attempts, the offline heuristics' view and the retry policy. The answer
is {category, confidence, reason, action, delay_seconds}. Replace `classify` with a call to your model.
"""

import json
import re

CATEGORIES = ("flaky-network", "flaky-timing", "flaky-resource", "environmental", "deterministic", "unknown")

# (category, action, delay, confidence, exception class names, message pattern)
RULES = (
    ("flaky-network", "retry_with_delay", 1.0, 0.85,
     {"ConnectionError", "ConnectionResetError", "ConnectionRefusedError", "ConnectionAbortedError",
      "BrokenPipeError", "gaierror", "ProtocolError", "ReadTimeout", "ConnectTimeout"},
     r"connection (reset|refused|aborted)|name resolution|temporarily unavailable|\b50[234]\b"),
    ("flaky-timing", "retry_with_delay", 2.0, 0.75,
     {"TimeoutError", "TimeoutExpired", "timeout"},
     r"timed? ?out|deadline exceeded"),
    ("flaky-resource", "retry_with_delay", 1.0, 0.75,
     {"ResourceWarning"},
     r"database is locked|too many open files|address already in use|no space left"),
    ("environmental", "stop_retry", None, 0.7,
     {"PermissionError", "FileNotFoundError", "ModuleNotFoundError"},
     r"permission denied|no such file|not installed|environment variable"),
    ("deterministic", "stop_retry", None, 0.8,
     {"AssertionError", "ImportError", "SyntaxError", "NameError", "TypeError", "AttributeError",
      "KeyError", "IndexError", "ValueError", "ZeroDivisionError", "NotImplementedError"},
     None),
)


def _short(name):
    return (name or "").rsplit(".", 1)[-1]


def classify(failure):
    """One failure (a dict) -> one answer (a dict)."""
    classes = {_short(n) for n in [failure.get("exception_type")] + list(failure.get("exception_bases") or [])}
    message = failure.get("message") or ""
    for category, action, delay, confidence, names, pattern in RULES:
        hit = sorted(classes & names)
        if hit:
            why = "%s is %s" % (hit[0], "a " + category + " failure")
        elif pattern and re.search(pattern, message, re.IGNORECASE):
            why = "the message matches /%s/" % pattern
        else:
            continue
        return {
            "category": category,
            "confidence": confidence,
            "reason": "example rules: " + why,
            "action": action,
            "delay_seconds": delay,
        }
    heuristic = failure.get("heuristic") or {}
    return {
        "category": heuristic.get("category", "unknown") if heuristic.get("category") in CATEGORIES else "unknown",
        "confidence": 0.3,
        "reason": "example rules: no rule matched, agreeing with smart-rerun's heuristics",
        "action": "retry",
        "delay_seconds": None,
    }


def load_answers(path):
    """Fixed answers for demos and tests: {"substring of a node id": {answer}}."""
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def answer_for(failure, answers):
    for needle, fixed in answers.items():
        if needle in (failure.get("nodeid") or ""):
            return dict(fixed)
    return classify(failure)


def log_call(path, failure):
    """Appends what was received, one JSON line per call (the tests read it)."""
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(failure, sort_keys=True) + "\n")
