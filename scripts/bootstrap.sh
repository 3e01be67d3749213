#!/usr/bin/env bash
# Install everything the project needs, from the project's own files, into the checkout:
#   .venv/            Python 3.11 virtualenv with the exact pins of requirements.lock
#   .local/stack/     Apache Kafka and Apicurio Registry, assembled from Maven Central
# Idempotent and quick when nothing changed. Needs python3.11, Java 17+ and Maven; as root on a
# Debian machine it installs a missing Java or Maven with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing $* with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    return 1
  fi
}

# --- Python 3.11
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$c; break
    fi
  done
fi
[ -n "$PY" ] || die "Python 3.11 not found: install python3.11 (or set PYTHON=/path/to/python3.11)"

# --- Java 17+ and Maven (the broker and the registry are JVM programs)
command -v java >/dev/null || apt_install openjdk-17-jre-headless \
  || die "Java 17 not found: install openjdk-17-jre-headless"
command -v mvn >/dev/null || apt_install maven || die "Maven not found: install maven"

# --- virtualenv with locked dependencies
stamp=.venv/.alpha-installed
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python dependencies (requirements.lock)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
else
  say "Python dependencies up to date"
fi

# --- Kafka and the schema registry from Maven Central
.venv/bin/alpha stack fetch
say "ready: .venv/bin/alpha --help"
