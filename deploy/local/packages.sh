# packages.sh — the Debian 12 packages orch needs to build, test and run, and
# a function that installs the missing ones. Sourced (not run) by
# deploy/local/run.sh and tests/run.sh, so the list lives in one place.
#
#   source deploy/local/packages.sh
#   orch_install_packages          # installs what is missing; returns non-zero on failure
#
# A package counts as present when dpkg-query reports it installed. Only the
# missing ones are installed, with `apt-get install -y --no-install-recommends`;
# `apt-get update` runs only when that first attempt fails (a fresh machine has
# no package lists). Runs apt-get directly as root, through sudo otherwise.
# Never prompts (DEBIAN_FRONTEND=noninteractive, stdin from /dev/null).
#
# Environment:
#   ORCH_SKIP_PACKAGES=1   skip the check and install entirely

# shellcheck shell=bash

ORCH_APT_PACKAGES=(
  build-essential
  cmake
  pkg-config
  protobuf-c-compiler
  libprotobuf-c-dev
  protobuf-compiler
  libnng-dev
  libpq-dev
  libcurl4-openssl-dev
  libssl-dev
  libjansson-dev
  libcriterion-dev
  postgresql
  postgresql-client
  clang-format
  clang
  python3
  iproute2
  docker-compose
  python3-yaml
  python3-protobuf
  pgbouncer
  chromium
  help2man
)

# Prints, one per line, the packages of ORCH_APT_PACKAGES not installed.
orch_missing_packages() {
  local pkg status
  for pkg in "${ORCH_APT_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "ii"* ]]; then
      printf '%s\n' "$pkg"
    fi
  done
}

# Runs apt-get as root: directly when we are root, through sudo otherwise.
orch__apt_get() {
  local -a prefix=()
  if [[ "$(id -u)" -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "packages: not root and sudo is not installed; install the packages as root" >&2
      return 1
    fi
    prefix=(sudo --preserve-env=DEBIAN_FRONTEND)
  fi
  DEBIAN_FRONTEND=noninteractive "${prefix[@]}" apt-get \
    -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 "$@" </dev/null
}

# Installs the missing packages; returns 0 when all are present afterwards.
orch_install_packages() {
  if [[ "${ORCH_SKIP_PACKAGES:-0}" == 1 ]]; then
    return 0
  fi
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "packages: dpkg-query not found: this needs Debian 12 (or set ORCH_SKIP_PACKAGES=1)" >&2
    return 1
  fi
  local -a missing
  mapfile -t missing < <(orch_missing_packages)
  if [[ ${#missing[@]} -eq 0 ]]; then
    return 0
  fi
  echo "packages: installing ${missing[*]}" >&2
  if ! orch__apt_get install -y -q --no-install-recommends "${missing[@]}"; then
    echo "packages: install failed; updating the package lists and trying again" >&2
    orch__apt_get update -q || return 1
    orch__apt_get install -y -q --no-install-recommends "${missing[@]}" || return 1
  fi
  mapfile -t missing < <(orch_missing_packages)
  if [[ ${#missing[@]} -ne 0 ]]; then
    echo "packages: still missing after install: ${missing[*]}" >&2
    return 1
  fi
}
