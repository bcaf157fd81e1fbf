#!/usr/bin/env bash
# The action's install step: puts the smart-rerun binary that matches the action's ref on this runner and
# writes its path to the step output `bin`; also names the artifact for this job and matrix leg.
#
# - The action's ref (the last part of GITHUB_ACTION_PATH, .../_actions/OWNER/REPO/REF) picks the release:
#   `vX.Y.Z`, or a major/minor tag (`v1`, `v1.2`) whose checkout holds version X.Y.Z in Cargo.toml. The
#   `version` input overrides it.
# - The asset for RUNNER_OS/RUNNER_ARCH is downloaded and its sha256 checked against the checksums file:
#   dist/checksums.txt in the action's own checkout when it lists the asset (pinned in git), else the
#   release's SHA256SUMS. A mismatch is an error, never a reason to fall back.
# - Cached in $RUNNER_TOOL_CACHE/smart-rerun/VERSION/ARCH, complete once ARCH.complete exists.
# - No release for the ref (a branch, a commit, `uses: ./`) or no asset for the platform: built from the
#   action's checkout with `cargo install --path`.
#
# Works with bash 3.2 (macOS runners).
set -euo pipefail

fail() {
  echo "::error title=smart-rerun install::$1"
  exit 1
}

action_path=${GITHUB_ACTION_PATH:-}
# The install-only action (install/action.yml, `uses: aki-07/smart-rerun/install@v1`) is one level down.
if [ -n "$action_path" ] && [ ! -f "$action_path/Cargo.toml" ] && [ -f "$action_path/../Cargo.toml" ]; then
  action_path=$(cd "$action_path/.." && pwd)
fi
if [ -z "$action_path" ] || [ ! -f "$action_path/Cargo.toml" ]; then
  fail "GITHUB_ACTION_PATH does not hold smart-rerun's sources"
fi
out=${GITHUB_OUTPUT:-/dev/null}
tool_cache=${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-/tmp}/tool-cache}
cargo=${SR_CARGO:-cargo}

set_output() {
  case $2 in
    *$'\n'* | *$'\r'*) fail "output $1 would span lines" ;;
  esac
  echo "$1=$2" >>"$out"
}

# The artifact name: unique per job, matrix leg and run attempt (artifact names are unique per run).
artifact=${SR_ARTIFACT_NAME:-}
if [ -z "$artifact" ]; then
  legs=""
  if [ -n "${SMART_RERUN_GITHUB_MATRIX:-}" ] && [ "$SMART_RERUN_GITHUB_MATRIX" != "null" ]; then
    # The values of the matrix object, not its keys: quoted strings and bare numbers/booleans.
    legs=$(printf '%s' "$SMART_RERUN_GITHUB_MATRIX" | tr -d '\r\n' |
      sed -E 's/"[^"]*"[[:space:]]*:[[:space:]]*/ /g; s/[{},"]/ /g')
  fi
  artifact="smart-rerun-${GITHUB_JOB:-job} ${legs} ${GITHUB_RUN_ATTEMPT:-1}"
  artifact=$(printf '%s' "$artifact" | tr -c 'A-Za-z0-9._-' '-' | tr -s '-' | sed -E 's/^-+//; s/-+$//')
fi
set_output artifact "$artifact"

version_in_checkout=$(sed -n -E 's/^version[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' "$action_path/Cargo.toml" | head -n 1)
ref=$(basename "$action_path")
repo=${SR_ACTION_REPOSITORY:-}
case $action_path in
  */_actions/*/*/*)
    if [ -z "$repo" ]; then
      rest=${action_path#*/_actions/}
      repo=${rest%/*}
    fi
    ;;
  *) ref="" ;; # `uses: ./` or a path checkout: the workspace, not a release
esac
repo=${repo:-aki-07/smart-rerun}

version=${SR_VERSION:-}
version=${version#v}
if [ -z "$version" ]; then
  case $ref in
    "v$version_in_checkout") version=$version_in_checkout ;;
    v[0-9] | v[0-9][0-9] | v[0-9]*.[0-9] | v[0-9]*.[0-9][0-9])
      case "$version_in_checkout" in
        "${ref#v}".*) version=$version_in_checkout ;;
      esac
      ;;
  esac
fi

case "${RUNNER_OS:-}/${RUNNER_ARCH:-}" in
  Linux/X64) target=x86_64-unknown-linux-musl ;;
  Linux/ARM64) target=aarch64-unknown-linux-musl ;;
  macOS/X64) target=x86_64-apple-darwin ;;
  macOS/ARM64) target=aarch64-apple-darwin ;;
  Windows/X64) target=x86_64-pc-windows-msvc ;;
  *) target="" ;;
esac
exe=smart-rerun
if [ "${RUNNER_OS:-}" = Windows ]; then
  exe=smart-rerun.exe
fi

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  else
    shasum -a 256 "$1" | cut -d ' ' -f 1
  fi
}

build_from_source() {
  echo "smart-rerun: building from the action's checkout ($1)"
  command -v "$cargo" >/dev/null 2>&1 || fail "no release binary for this runner ($1) and no cargo to build one: install Rust (e.g. dtolnay/rust-toolchain) before this action"
  root="${RUNNER_TEMP:-/tmp}/smart-rerun-build"
  "$cargo" install --locked --quiet --path "$action_path" --root "$root" ||
    fail "cargo install --path $action_path failed"
  [ -x "$root/bin/$exe" ] || fail "cargo install left no $root/bin/$exe"
  set_output bin "$root/bin/$exe"
  echo "$root/bin" >>"${GITHUB_PATH:-/dev/null}"
}

if [ -z "$version" ]; then
  build_from_source "ref '${ref:-local}' is not a release"
  exit 0
fi
if [ -z "$target" ]; then
  build_from_source "no release asset for ${RUNNER_OS:-?}/${RUNNER_ARCH:-?}"
  exit 0
fi

dir="$tool_cache/smart-rerun/$version/${RUNNER_ARCH:-unknown}"
if [ -f "$dir.complete" ] && [ -x "$dir/$exe" ]; then
  echo "smart-rerun $version: cached in $dir"
  set_output bin "$dir/$exe"
  echo "$dir" >>"${GITHUB_PATH:-/dev/null}"
  exit 0
fi

asset="smart-rerun-v$version-$target.tar.gz"
base=${SR_RELEASE_BASE:-${GITHUB_SERVER_URL:-https://github.com}/$repo/releases/download}
url="$base/v$version/$asset"
tmp=$(mktemp -d "${RUNNER_TEMP:-/tmp}/smart-rerun.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "smart-rerun $version: downloading $url"
if ! curl --fail --silent --show-error --location --retry 3 --output "$tmp/$asset" "$url"; then
  build_from_source "no asset $asset in release v$version"
  exit 0
fi

expected=""
if [ -f "$action_path/dist/checksums.txt" ]; then
  expected=$(awk -v a="$asset" '$2 == a || $2 == "*" a { print $1 }' "$action_path/dist/checksums.txt" | head -n 1)
fi
if [ -z "$expected" ]; then
  curl --fail --silent --show-error --location --retry 3 --output "$tmp/SHA256SUMS" "$base/v$version/SHA256SUMS" ||
    fail "release v$version has no SHA256SUMS to check $asset against"
  expected=$(awk -v a="$asset" '$2 == a || $2 == "*" a { print $1 }' "$tmp/SHA256SUMS" | head -n 1)
fi
[ -n "$expected" ] || fail "no checksum listed for $asset"
actual=$(sha256 "$tmp/$asset")
if [ "$actual" != "$expected" ]; then
  fail "checksum mismatch for $asset: expected $expected, got $actual"
fi

rm -rf "$dir"
mkdir -p "$dir"
tar -xzf "$tmp/$asset" -C "$dir"
[ -f "$dir/$exe" ] || fail "$asset does not contain $exe"
chmod +x "$dir/$exe"
touch "$dir.complete"
echo "smart-rerun $version: installed in $dir"
set_output bin "$dir/$exe"
echo "$dir" >>"${GITHUB_PATH:-/dev/null}"
