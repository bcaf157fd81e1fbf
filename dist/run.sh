#!/usr/bin/env bash
# The action's run step: turns the action's inputs (passed as SR_* environment variables, never pasted
# into a script) into smart-rerun's command line, then execs smart-rerun, so the runner's cancellation
# signal (SIGINT, then SIGTERM) reaches it and it can stop pytest and still write its reports.
#
# Settings inputs become flags, not SMART_RERUN_* variables: a step's `env:` entry for an empty input would
# set the variable to "" and hide a SMART_RERUN_* value the workflow set at job level. Flags are added only
# for inputs that are set. Tokens never go on the command line (other processes can read it): they are
# passed as SMART_RERUN_GITHUB_TOKEN / SMART_RERUN_AI_TOKEN, and smart-rerun keeps the GitHub token from
# pytest's environment.
#
# Works with bash 3.2 (macOS runners): no mapfile, no associative arrays.
set -euo pipefail

fail() {
  echo "::error title=smart-rerun::$1"
  exit 4
}

bin=${SR_BIN:-}
[ -n "$bin" ] || fail "smart-rerun is not installed (the install step gave no binary)"

args=(run)
# input variable, flag — one line per setting of src/config/keys.rs (tokens and the history URL excepted, see below).
while read -r var flag; do
  [ -n "$var" ] || continue
  value=${!var:-}
  if [ -n "$value" ]; then
    args+=("$flag=$value")
  fi
done <<'SETTINGS'
SR_IN_RERUN --rerun
SR_IN_MAX --max
SR_IN_DELAY --delay
SR_IN_BACKOFF --backoff
SR_IN_MAX_DELAY --max-delay
SR_IN_JITTER --jitter
SR_IN_ERRORS --errors
SR_IN_MAX_FAILURES --max-failures
SR_IN_MAX_RERUNS --max-reruns
SR_IN_FAIL_ON_FLAKY --fail-on-flaky
SR_IN_EARLY_STOP --early-stop
SR_IN_PRESTART --prestart
SR_IN_FORK --fork
SR_IN_REPORT --report
SR_IN_JUNIT_XML --junit-xml
SR_IN_JUNIT_COMPAT --junit-compat
SR_IN_MARKDOWN --markdown
SR_IN_QUARANTINE --quarantine
SR_IN_QUARANTINE_GRACE_DAYS --quarantine-grace-days
SR_IN_NEW_TEST_REPEATS --new-test-repeats
SR_IN_HISTORY_POLICY --history-policy
SR_IN_HISTORY_MAX --history-max
SR_IN_HISTORY_FLAKY_PERCENT --history-flaky-percent
SR_IN_AI --ai
SR_IN_AI_ENDPOINT --ai-endpoint
SR_IN_AI_REPORT --ai-report
SR_IN_AI_CACHE --ai-cache
SR_IN_AI_REDACT --ai-redact
SR_IN_AI_PROTOCOL --ai-protocol
SR_IN_AI_TOOL --ai-tool
SR_IN_AI_TIMEOUT --ai-timeout
SR_IN_ANNOTATIONS --github-annotations
SR_IN_SUMMARY --github-summary
SR_IN_COMMENT --github-comment
SR_IN_COMMENT_KEY --github-comment-key
SR_IN_STOP_COMMANDS --github-stop-commands
SETTINGS

if [ -n "${SR_IN_GITHUB_TOKEN:-}" ]; then
  export SMART_RERUN_GITHUB_TOKEN="$SR_IN_GITHUB_TOKEN"
fi
if [ -n "${SR_IN_AI_TOKEN:-}" ]; then
  export SMART_RERUN_AI_TOKEN="$SR_IN_AI_TOKEN"
fi
# A PostgreSQL URL may hold a password: through the variable, like the tokens.
if [ -n "${SR_IN_HISTORY:-}" ]; then
  export SMART_RERUN_HISTORY="$SR_IN_HISTORY"
fi
unset SR_IN_GITHUB_TOKEN SR_IN_AI_TOKEN SR_IN_HISTORY

if [ -n "${SR_PYTHON:-}" ]; then
  args+=("--python=$SR_PYTHON")
fi

# The pytest command: `command` is split on whitespace (`uv run pytest`, `poetry run pytest`); each line of
# `pytest-args` is one argument, so an argument may hold spaces (`-k` then `slow and not network`).
cmd=()
command_line=${SR_COMMAND:-}
if [ -n "${command_line//[[:space:]]/}" ]; then
  read -r -a cmd <<<"$command_line"
fi
extra=()
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%$'\r'}
  if [ -n "${line//[[:space:]]/}" ]; then
    extra+=("$line")
  fi
done <<<"${SR_PYTEST_ARGS:-}"

if [ "${#cmd[@]}" -eq 0 ] && [ "${#extra[@]}" -gt 0 ]; then
  # Arguments without a command: `python -m pytest`, with the interpreter smart-rerun itself would pick.
  if [ -n "${SR_PYTHON:-}" ]; then
    py=$SR_PYTHON
  elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    py=$VIRTUAL_ENV/bin/python
  elif [ -x .venv/bin/python ]; then
    py=.venv/bin/python
  elif command -v python >/dev/null 2>&1; then
    py=python
  else
    py=python3
  fi
  cmd=("$py" -m pytest)
fi

if [ "${#cmd[@]}" -gt 0 ]; then
  args+=(--)
  args+=("${cmd[@]}")
  if [ "${#extra[@]}" -gt 0 ]; then
    args+=("${extra[@]}")
  fi
fi

exec "$bin" "${args[@]}"
