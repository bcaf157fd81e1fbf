#!/usr/bin/env bash
# The action's dashboard step: `smart-rerun dashboard` from the run's history into SR_DASHBOARD_DIR, after
# the run, whatever its result. The history location arrives in SMART_RERUN_HISTORY (it may hold a
# password: never on a command line). Sets the step output `dir` when the page was written; a dashboard
# that cannot be written is a warning, not the tests' result.
set -euo pipefail

out=${GITHUB_OUTPUT:-/dev/null}
bin=${SR_BIN:-}
dir=${SR_DASHBOARD_DIR:-}
if [ -z "$bin" ] || [ -z "$dir" ] || [ -z "${SMART_RERUN_HISTORY:-}" ]; then
  echo "::warning title=smart-rerun::no dashboard: smart-rerun is not installed or no history is set"
  exit 0
fi
if "$bin" dashboard --out "$dir" && [ -f "$dir/index.html" ]; then
  echo "dir=$dir" >>"$out"
else
  echo "::warning title=smart-rerun::the flake dashboard was not written (see the log above)"
fi
exit 0
