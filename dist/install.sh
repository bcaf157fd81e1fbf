#!/usr/bin/env bash
# The action's install step: puts the smart-rerun binary that matches the action's ref on this runner and
# writes its path to the step output `bin`; also names the artifact for this job and matrix leg.
#
# - The action's ref (the last part of GITHUB_ACTION_PATH, .../_actions/OWNER/REPO/REF) picks the version:
#   `vX.Y.Z`, or a major/minor tag (`v1`, `v1.2`) whose tree holds version X.Y.Z in Cargo.toml. The
#   `version` input overrides it.
# - Trust comes from the action's own tree only: dist/checksums.txt at the ref the user pinned, written by
#   the release workflow in the commit the tag points at. Nothing the release serves (no SHA256SUMS) is
#   trusted, so an archive replaced in the release, with a matching SHA256SUMS beside it, is refused. A
#   version the tree lists nothing for is refused, unless the `sha256` input gives the archive's SHA-256.
# - The archive for RUNNER_OS/RUNNER_ARCH comes from DOWNLOAD_URL/vX.Y.Z/ (the `download-url` input, else
#   SMART_RERUN_DOWNLOAD_URL, else the repository's releases on GITHUB_SERVER_URL), https only, redirects
#   included. A mismatch is an error, never a reason to fall back.
# - The tool cache ($RUNNER_TOOL_CACHE/smart-rerun/VERSION/ARCH, complete once ARCH.complete exists) keeps
#   the archive beside the binary. A cache hit re-checks the archive against the tree's sha256 and puts the
#   binary back from it, so a binary or archive changed in a shared tool cache (self-hosted runners) is
#   never run.
# - No archive for this platform in the tree (or none at DOWNLOAD_URL): the pytest-smart-rerun wheel of the
#   same version from the Python package index, `pip install --require-hashes` with the wheels' sha256 from
#   the tree, binary wheels only, no dependencies, into RUNNER_TEMP.
# - Built from the action's tree with `cargo install --path` only when the ref is not a release (a branch,
#   a commit, `uses: ./`), or when the platform has no archive and no wheel installs.
#
# Works with bash 3.2 (macOS runners).
set -euo pipefail

fail() {
  echo "::error title=smart-rerun install::$1"
  exit 1
}
note() {
  echo "smart-rerun: $1"
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
sums_file="$action_path/dist/checksums.txt"

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
case $version in
  "" | [0-9]*.[0-9]*.[0-9]*) ;;
  *) fail "version '$version' is not X.Y.Z" ;;
esac
case $version in
  *[!0-9A-Za-z.+-]*) fail "version '$version' is not X.Y.Z" ;;
esac

# Where releases are downloaded from: https only (curl below also refuses a redirect to anything else).
base=${SR_DOWNLOAD_URL:-${SMART_RERUN_DOWNLOAD_URL:-}}
if [ -z "$base" ]; then
  base="${GITHUB_SERVER_URL:-https://github.com}/$repo/releases/download"
fi
base=${base%/}
case $base in
  https://*[!/]*) ;;
  *) fail "download-url must be an https:// URL (the base under which vX.Y.Z/<file> is found), not '$base'" ;;
esac
case $base in
  *[[:space:]]*) fail "download-url must not contain spaces: '$base'" ;;
esac

user_sha=${SR_SHA256:-}
case $user_sha in
  "") ;;
  *[!0-9a-f]*) fail "sha256 must be 64 lowercase hex digits" ;;
  *) [ "${#user_sha}" -eq 64 ] || fail "sha256 must be 64 lowercase hex digits" ;;
esac

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

# The sha256 the action's tree lists for a file name, or nothing.
trusted() {
  if [ -f "$sums_file" ]; then
    awk -v f="$1" '$2 == f { print $1; exit }' "$sums_file"
  fi
}

# https only, also after a redirect; retried; fails on an HTTP error.
download() {
  curl --proto '=https' --proto-redir '=https' --tlsv1.2 --fail --silent --show-error --location \
    --retry 3 --output "$2" "$1"
}

build_from_source() {
  note "building from the action's tree ($1)"
  command -v "$cargo" >/dev/null 2>&1 || fail "no release binary for this runner ($1) and no cargo to build one: install Rust (e.g. with rustup) before this action"
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

archive=""
want=""
if [ -n "$target" ]; then
  archive="smart-rerun-v$version-$target.tar.gz"
  want=$(trusted "$archive")
fi
if [ -n "$user_sha" ]; then
  if [ -n "$want" ] && [ "$want" != "$user_sha" ]; then
    fail "the sha256 input differs from the one the action's tree lists for $archive ($want)"
  fi
  [ -n "$archive" ] || fail "the sha256 input names an archive, and there is none for ${RUNNER_OS:-?}/${RUNNER_ARCH:-?}"
  want=$user_sha
fi
wheel_hashes=""
if [ -f "$sums_file" ]; then
  wheel_hashes=$(awk -v p="pytest_smart_rerun-$version-" 'index($2, p) == 1 && $2 ~ /\.whl$/ { print $1 }' "$sums_file")
fi
if [ -z "$want" ] && [ -z "$wheel_hashes" ]; then
  fail "the action's tree at '${ref:-?}' lists no checksums for smart-rerun $version (dist/checksums.txt), so nothing can be verified: use the action at v$version (uses: $repo@v$version), or give the archive's SHA-256 in the sha256 input"
fi

tmp=$(mktemp -d "${RUNNER_TEMP:-/tmp}/smart-rerun.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Puts the binary of a verified archive at $dir/$exe: unpacked apart, then renamed into place (a running
# copy of the old file is never written to).
unpack() {
  rm -rf "$tmp/unpack"
  mkdir -p "$tmp/unpack"
  tar -xzf "$1" -C "$tmp/unpack" "$exe" 2>/dev/null || fail "$archive does not contain $exe"
  [ -f "$tmp/unpack/$exe" ] || fail "$archive does not contain $exe"
  chmod +x "$tmp/unpack/$exe"
  if [ -f "$dir/$exe" ] && ! cmp -s "$tmp/unpack/$exe" "$dir/$exe"; then
    echo "::warning title=smart-rerun install::the tool cache's $dir/$exe differs from the verified archive; replaced it"
  fi
  mv -f "$tmp/unpack/$exe" "$dir/$exe"
}

installed() {
  set_output bin "$1/$exe"
  echo "$1" >>"${GITHUB_PATH:-/dev/null}"
}

# The wheel path: pip checks each file it downloads against the tree's hashes.
install_wheel() {
  [ -n "$wheel_hashes" ] || {
    note "the action's tree lists no pytest-smart-rerun $version wheel"
    return 1
  }
  for index in ${PIP_INDEX_URL:-} ${PIP_EXTRA_INDEX_URL:-}; do
    case $index in
      https://*) ;;
      *)
        note "not installing the wheel: the package index '$index' is not https"
        return 1
        ;;
    esac
  done
  py=""
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 8))' >/dev/null 2>&1; then
      py=$candidate
      break
    fi
  done
  [ -n "$py" ] || {
    note "no Python 3.8+ to install the pytest-smart-rerun wheel with"
    return 1
  }
  {
    printf 'pytest-smart-rerun==%s' "$version"
    for h in $wheel_hashes; do
      printf ' --hash=sha256:%s' "$h"
    done
    echo
  } >"$tmp/requirements.txt"
  wheel_dir="${RUNNER_TEMP:-/tmp}/smart-rerun-wheel"
  rm -rf "$wheel_dir"
  note "installing pytest-smart-rerun $version with pip (--require-hashes, hashes from the action's tree)"
  if ! "$py" -m pip install --disable-pip-version-check --no-input --quiet --no-deps --only-binary :all: \
    --require-hashes --target "$wheel_dir" -r "$tmp/requirements.txt" >"$tmp/pip.log" 2>&1; then
    cat "$tmp/pip.log"
    if grep -q 'DO NOT MATCH THE HASHES' "$tmp/pip.log"; then
      fail "the pytest-smart-rerun $version wheel from the package index does not match the sha256 in the action's tree"
    fi
    note "pip could not install a pytest-smart-rerun $version wheel for this runner"
    return 1
  fi
  for d in bin Scripts; do
    if [ -f "$wheel_dir/$d/$exe" ]; then
      chmod +x "$wheel_dir/$d/$exe"
      note "$version installed from the wheel in $wheel_dir/$d"
      installed "$wheel_dir/$d"
      return 0
    fi
  done
  fail "the pytest-smart-rerun wheel holds no $exe"
}

if [ -z "$want" ]; then
  if [ -z "$target" ]; then
    note "no release archive for ${RUNNER_OS:-?}/${RUNNER_ARCH:-?}"
  else
    note "the action's tree lists no $archive"
  fi
  install_wheel && exit 0
  build_from_source "no release archive or wheel for ${RUNNER_OS:-?}/${RUNNER_ARCH:-?}"
  exit 0
fi

dir="$tool_cache/smart-rerun/$version/${RUNNER_ARCH:-unknown}"
if [ -f "$dir.complete" ] && [ -f "$dir/$archive" ]; then
  if [ "$(sha256 "$dir/$archive")" = "$want" ]; then
    unpack "$dir/$archive"
    note "$version: cached in $dir, archive verified"
    installed "$dir"
    exit 0
  fi
  echo "::warning title=smart-rerun install::the tool cache's $archive does not match the action's checksum; downloading it again"
fi
rm -rf "$dir" "$dir.complete"

url="$base/v$version/$archive"
note "$version: downloading $url"
if ! download "$url" "$tmp/$archive"; then
  # Never cargo where the release has an archive: a mirror that lacks it is a setup to fix, not a
  # reason to compile for minutes. The wheel is verified the same way, so it may stand in.
  note "could not download $url"
  install_wheel && exit 0
  fail "could not download $url (download-url: $base), and no wheel installed instead"
fi
actual=$(sha256 "$tmp/$archive")
if [ "$actual" != "$want" ]; then
  fail "checksum mismatch for $archive: the action's tree lists $want, the download is $actual; nothing was installed"
fi

mkdir -p "$dir"
mv "$tmp/$archive" "$dir/$archive"
unpack "$dir/$archive"
touch "$dir.complete"
note "$version: installed in $dir"
installed "$dir"
