#!/usr/bin/env bash
# Prepare this machine (Debian, as root) for the sandbox and the tests:
#   - Debian packages: python3-venv, docker.io, debootstrap, chromium (only what
#     is missing; chromium is the browser of the checks in tests/browser)
#   - promtool and amtool, unpacked from Debian's packages into the venv
#     (no Prometheus/Alertmanager service is installed on the controller)
#   - the Python venv (.venv) from requirements.txt
#   - a running Docker engine (started in the background when there is no systemd)
#   - the systemd base image for the containers (scripts/build-image.sh)
# With --tools, only what the controller-side checks need (lint, unit tests):
# no Docker engine, no image. With --bench, the same plus the prometheus server
# binary from Debian's package into .cache/bench/bin (benchmarks/rules_bench.py).
# Idempotent: a second run only checks.
set -euo pipefail
tools_only=""
bench=""
case "${1:-}" in
  --tools) tools_only=1 ;;
  --bench) tools_only=1 bench=1 ;;
esac
cd "$(dirname "$0")/.."
root="$PWD"
venv="$root/.venv"
cache="$root/.cache"
mkdir -p "$cache"

log() { printf 'setup: %s\n' "$*"; }

apt_updated=""
apt_install() {
  if [[ -z "$apt_updated" ]]; then
    log "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Debian packages -----------------------------------------------------------
missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [[ -z "$tools_only" ]]; then
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
fi
command -v make >/dev/null || missing+=(make)
if ((${#missing[@]})); then
  apt_install "${missing[@]}"
fi

# --- Python venv -----------------------------------------------------------------
stamp="$venv/.requirements.sha256"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]]; then
  log "creating $venv"
  python3 -m venv "$venv"
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  log "installing requirements.txt into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
  "$venv/bin/pip" install -q --disable-pip-version-check -r requirements.txt
  echo "$want" >"$stamp"
fi
# The AetherLink service (app/) with its test extra, for its unit tests.
if [[ -f app/pyproject.toml ]] && ! "$venv/bin/python" -c 'import aetherlink, httpx' 2>/dev/null; then
  log "installing app/ (editable, with its test extra) into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -e './app[test]'
fi

# --- promtool and amtool from Debian's packages ---------------------------------------
extract_tool() { # tool package [destination directory, default the venv's bin]
  local tool="$1" pkg="$2" dest="${3:-$venv/bin}"
  [[ -x "$dest/$tool" ]] && return 0
  if [[ -z "$apt_updated" ]]; then apt-get update -qq; apt_updated=1; fi
  log "unpacking $tool from Debian's $pkg"
  local dir
  dir="$(mktemp -d "$cache/deb.XXXXXX")"
  (cd "$dir" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null)
  dpkg-deb -x "$dir"/"$pkg"_*.deb "$dir/root"
  mkdir -p "$dest"
  install -m 0755 "$dir/root/usr/bin/$tool" "$dest/$tool"
  rm -rf "$dir"
}
extract_tool promtool prometheus
extract_tool amtool prometheus-alertmanager
if [[ -n "$bench" ]]; then
  extract_tool prometheus prometheus "$cache/bench/bin"
  log "benchmark tools ready ($cache/bench/bin/prometheus)"
  exit 0
fi

if [[ -n "$tools_only" ]]; then
  log "tools ready (no Docker engine needed for lint and unit tests)"
  exit 0
fi

# --- Docker engine -----------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  if [[ -d /run/systemd/system ]]; then
    log "starting docker with systemctl"
    systemctl start docker
  else
    log "starting dockerd in the background (log: /var/log/aetherlink-dockerd.log)"
    nohup dockerd >/var/log/aetherlink-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { log "docker did not start; see /var/log/aetherlink-dockerd.log"; exit 1; }
fi
log "docker $(docker version --format '{{.Server.Version}}') running"

# --- Base image ----------------------------------------------------------------------
bash scripts/build-image.sh
log "ready"
