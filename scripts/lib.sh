# Helpers shared by scripts/run, scripts/test and the benchmarks. Source, don't run.

# apt-get install the named packages that are missing, running `apt-get update` once first.
plaza_apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  if [[ -z ${PLAZA_APT_UPDATED:-} ]]; then
    "${sudo[@]}" apt-get update -qq
    export PLAZA_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# A TCP port that is free on the loopback interface right now.
plaza_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Directory holding PostgreSQL's initdb and pg_ctl, installing PostgreSQL if needed.
plaza_pg_bindir() {
  local candidate
  for candidate in /usr/lib/postgresql/*/bin; do
    [[ -x $candidate/initdb ]] && { echo "$candidate"; return 0; }
  done
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return 0
  fi
  plaza_apt_install postgresql >&2
  for candidate in /usr/lib/postgresql/*/bin; do
    [[ -x $candidate/initdb ]] && { echo "$candidate"; return 0; }
  done
  echo "PostgreSQL's initdb was not found even after installing postgresql" >&2
  return 1
}

# Starts a throw-away PostgreSQL cluster on a free port and exports
# PLAZA_TEST_DATABASE_URL; plaza_pg_stop removes it. PostgreSQL refuses to run as root,
# so as root the cluster belongs to the postgres user.
plaza_pg_start() {
  local bindir port
  bindir=$(plaza_pg_bindir)
  port=$(plaza_free_port)
  PLAZA_PG_DIR=$(mktemp -d /tmp/plaza-pg.XXXXXX)
  local as_owner=()
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$PLAZA_PG_DIR" postgres
    chown postgres "$PLAZA_PG_DIR"
    as_owner=(runuser -u postgres --)
  fi
  "${as_owner[@]}" "$bindir/initdb" -D "$PLAZA_PG_DIR/data" -U postgres -A trust --no-sync >/dev/null
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$PLAZA_PG_DIR/data" -l "$PLAZA_PG_DIR/log" -w -t 60 \
    -o "-p $port -k $PLAZA_PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null
  export PLAZA_PG_BINDIR=$bindir PLAZA_PG_DIR
  export PLAZA_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  PLAZA_PG_AS_OWNER=("${as_owner[@]}")
}

plaza_pg_stop() {
  [[ -n ${PLAZA_PG_DIR:-} && -d ${PLAZA_PG_DIR:-} ]] || return 0
  "${PLAZA_PG_AS_OWNER[@]}" "$PLAZA_PG_BINDIR/pg_ctl" -D "$PLAZA_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PLAZA_PG_DIR"
}

# Waits until URL answers 2xx, for at most SECONDS.
plaza_wait_http() {
  local url=$1 seconds=${2:-60} waited=0
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    sleep 0.2
    waited=$((waited + 1))
    ((waited < seconds * 5)) || { echo "$url did not answer within ${seconds}s" >&2; return 1; }
  done
}

# Builds the web client into web/dist (which `cargo build` then embeds into plaza),
# installing Node.js and npm first if they are missing. npm ci runs only when
# package-lock.json changed since the last install.
plaza_build_web() {
  command -v npm >/dev/null 2>&1 || plaza_apt_install nodejs npm
  local stamp=web/node_modules/.plaza-lock-sha lock_sha
  lock_sha=$(sha256sum web/package-lock.json | cut -d' ' -f1)
  if [[ ! -f $stamp || $(cat "$stamp") != "$lock_sha" ]]; then
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sha" >"$stamp"
  fi
  (cd web && npm run --silent build -- --logLevel warn)
}
