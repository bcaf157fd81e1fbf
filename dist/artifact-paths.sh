#!/usr/bin/env bash
# The action's reports, for actions/upload-artifact: the JSON and JUnit reports smart-rerun wrote (absolute
# paths from its outputs) and the AI trail, those that exist, one per line in the step output `paths`.
set -euo pipefail

out=${GITHUB_OUTPUT:-/dev/null}
paths=""
for p in "${SR_REPORT:-}" "${SR_JUNIT:-}" "${SR_AI_REPORT:-}"; do
  [ -n "$p" ] || continue
  case $p in
    /* | [A-Za-z]:[\\/]*) ;;
    *) p="$PWD/$p" ;;
  esac
  case $p in
    *$'\n'* | *$'\r'*) continue ;;
  esac
  if [ -f "$p" ]; then
    paths="$paths$p"$'\n'
  fi
done
delimiter="ghadelimiter_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
{
  echo "paths<<$delimiter"
  printf '%s' "$paths"
  echo "$delimiter"
} >>"$out"
