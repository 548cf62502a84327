# Shared set-up helpers, sourced by scripts/run, scripts/test and scripts/fuzz.
# Everything the project needs is installed from here: nothing is installed by hand.

die() { echo "error: $*" >&2; exit 1; }

require_rust() {
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (rustup, 1.89 or newer)"
  local v
  v=$(rustc --version | awk '{print $2}')
  case "$v" in
    1.[0-7][0-9].*|1.8[0-8].*) die "rustc $v is too old; 1.89 or newer is needed" ;;
  esac
}

# ensure_cargo_tool BINARY CRATE VERSION: cargo install it once (into ~/.cargo/bin) if missing.
ensure_cargo_tool() {
  local bin="$1" crate="$2" version="$3"
  if ! command -v "$bin" >/dev/null 2>&1; then
    echo "== installing $crate $version (cargo install, once)"
    cargo install --locked --quiet "$crate" --version "$version"
  fi
}

# ensure_apt [--no-install-recommends] PACKAGE...: install Debian packages that are missing.
ensure_apt() {
  local missing=() opts=()
  if [ "${1:-}" = "--no-install-recommends" ]; then opts+=("$1"); shift; fi
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "== apt-get install ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${opts[@]}" "${missing[@]}" >/dev/null
  fi
}

# ensure_postgres: PostgreSQL 15's server binaries (Debian's postgresql-15) for the tests' throwaway
# clusters (tests/src/pg.rs, tests/python/conftest.py), which run them from a temporary directory.
# No system cluster is created and no service is started: createcluster.d says so before the
# package is installed, and policy-rc.d keeps the package's scripts from starting anything.
ensure_postgres() {
  [ -x /usr/lib/postgresql/15/bin/initdb ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.d/cloister.conf >/dev/null
  local policy=/usr/sbin/policy-rc.d added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    added_policy=1
  fi
  ensure_apt --no-install-recommends postgresql-15
  [ -z "$added_policy" ] || $sudo rm -f "$policy"
  [ -x /usr/lib/postgresql/15/bin/initdb ] || die "postgresql-15 installed, but /usr/lib/postgresql/15/bin/initdb is missing"
}

# ensure_venv REQUIREMENTS...: a project venv in .venv with the pinned requirements installed
# (re-installed when a requirements file changes).
ensure_venv() {
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    ensure_apt python3-venv
  fi
  [ -x .venv/bin/python ] || python3 -m venv .venv
  local stamp=.venv/.requirements.sha256 want
  want=$(cat "$@" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "== pip install (pinned) into .venv"
    .venv/bin/pip install -q --disable-pip-version-check $(printf -- '-r %s ' "$@")
    echo "$want" > "$stamp"
  fi
}
