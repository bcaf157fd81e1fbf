"""Retry policies in plain words -> smart-rerun settings, for `smart-rerun policy "..."`.

The rules read a handful of phrasings on purpose, like rules.py, so the whole loop can be seen working;
replace `translate` with a call to the model of your choice. smart-rerun sends the sentence and the
settings it may set (key, kind, allowed values, default, help); it checks the answer itself, as it checks
any configuration, and rejects it with the reasons when it does not hold.
"""

import json
import re

NETWORK_ERRORS = [
    "ConnectionError",
    "TimeoutError",
    "requests.exceptions.ConnectionError",
    "requests.exceptions.Timeout",
    "httpx.TransportError",
    "urllib3.exceptions.HTTPError",
]

_NUMBER_WORDS = {"once": 1, "twice": 2, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
                 "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_NUMBER = r"(\d+|one|two|three|four|five|six|seven|eight|nine|ten)"
_SECONDS = r"(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?)\b"


def _number(word):
    return int(word) if word.isdigit() else _NUMBER_WORDS[word]


def _seconds(amount, unit):
    value = float(amount)
    if unit.startswith("ms") or unit.startswith("milli"):
        value /= 1000
    elif unit.startswith("m"):
        value *= 60
    return ("%g" % value)


def translate(sentence, settings=None):
    """The answer smart-rerun expects: {"settings": {key: value}, "notes": [text]}."""
    text = " ".join(sentence.lower().split())
    known = {s.get("key") for s in settings or []} or None
    out, notes = {}, []

    m = re.search(r"up to %s (?:times|retries|reruns)" % _NUMBER, text) or re.search(
        r"retr(?:y|ies)\s+(?:\w+\s+){0,3}?%s times" % _NUMBER, text)
    if m:
        retries = _number(m.group(1))
        out["smart_rerun_max"] = str(retries + 1)
        notes.append("'%s' read as %d retries after the first run: %d attempts in all"
                     % (m.group(0), retries, retries + 1))
    m = re.search(r"(?:at most|up to|max(?:imum)?(?: of)?) %s attempts" % _NUMBER, text)
    if m:
        out["smart_rerun_max"] = str(_number(m.group(1)))
    if re.search(r"\b(?:twice)\b", text) and "smart_rerun_max" not in out:
        out["smart_rerun_max"] = "3"
        notes.append("'twice' read as 2 retries: 3 attempts in all")

    if re.search(r"exponential|exponentially|\bexp\b", text):
        out["smart_rerun_backoff"] = "exp"
    elif re.search(r"\blinear(ly)?\b", text):
        out["smart_rerun_backoff"] = "linear"
    elif re.search(r"no backoff|constant delay|fixed delay", text):
        out["smart_rerun_backoff"] = "none"

    m = re.search(r"(?:cap(?:ped)? at|at most|no more than|max(?:imum)? delay of)\s+" + _SECONDS, text)
    if m:
        out["smart_rerun_max_delay"] = _seconds(m.group(1), m.group(2))
    m = re.search(_SECONDS + r"\s+(?:delay|wait|pause|apart)", text) or re.search(
        r"(?:wait(?:ing)?|delay|pause)(?: of| for)?\s+" + _SECONDS, text)
    if m:
        out["smart_rerun_delay"] = _seconds(m.group(1), m.group(2))

    errors = []
    if re.search(r"\bnetwork\b|\bconnection (?:errors?|issues?|problems?|failures?)|connectivity", text):
        errors += NETWORK_ERRORS
    if re.search(r"time ?outs?\b|timing out", text) and "TimeoutError" not in errors:
        errors.append("TimeoutError")
    errors += [name for name in re.findall(r"\b([A-Za-z_][\w.]*(?:Error|Exception))\b", sentence)
               if not re.search(r"(?:never|not|don't|do not)\s+(?:retry\s+)?(?:\w+\s+)?" + re.escape(name),
                                sentence, re.IGNORECASE)]
    errors = list(dict.fromkeys(errors))
    if errors:
        out["smart_rerun_errors"] = ",".join(errors)
    m = re.search(r"(?:never|don't|do not|not) retry ([\w\s]+?)(?:errors?|failures?|exceptions?)\b", text)
    if m:
        what = m.group(1).strip() or "those"
        if errors:
            notes.append("%s errors are not in smart_rerun_errors, so they are never retried" % what)
        else:
            notes.append("smart-rerun retries by an allow-list (smart_rerun_errors); 'never retry %s errors' "
                         "alone cannot be said: name the errors to retry" % what)

    if re.search(r"flaky tests? (?:should )?fail|fail (?:the build |the run )?on flaky", text):
        out["smart_rerun_fail_on_flaky"] = "true"
    if re.search(r"only (?:the )?marked tests|only tests marked", text):
        out["smart_rerun"] = "false"
    m = re.search(r"more than %s tests? fail" % _NUMBER, text)
    if m:
        out["smart_rerun_max_failures"] = str(_number(m.group(1)))
    m = re.search(r"(?:at most|no more than) %s reruns? (?:in total|overall|per run)" % _NUMBER, text)
    if m:
        out["smart_rerun_max_reruns"] = str(_number(m.group(1)))

    if known is not None:
        dropped = sorted(k for k in out if k not in known)
        for key in dropped:
            del out[key]
            notes.append("%s is not offered by this smart-rerun, left out" % key)
    if not out:
        notes.append("no retry policy recognised in: %s" % sentence)
    return {"settings": out, "notes": notes}


def load_answer(path):
    """A fixed answer from a JSON file (tests and demos), or None."""
    if not path:
        return None
    with open(path) as f:
        return json.load(f)
