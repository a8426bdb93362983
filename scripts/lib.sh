# Shared set-up for scripts/run and scripts/test. Sourced, not run.
# Every step says what it is doing; every failure says what to do about it.

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

pick_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  die "Python 3.11 is needed (try: apt-get install python3.11 python3.11-venv)."
}

# Create .venv and install the given requirements file, skipping the install when nothing changed.
ensure_venv() {
  local requirements=$1 stamp=.venv/.installed-$1
  if [ ! -x .venv/bin/python ]; then
    step "Creating the virtual environment in .venv"
    "$(pick_python)" -m venv .venv || die "could not create .venv (on Debian: apt-get install python3-venv)"
  fi
  local want; want=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    step "Installing Python packages from $requirements (first run takes a minute or two)"
    .venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
    .venv/bin/python -m pip install --disable-pip-version-check -q -r "$requirements" 2>&1 \
      | grep -v '^WARNING: Location' >&2 || true
    .venv/bin/python -c 'import django, channels, daphne, paho.mqtt, psycopg' \
      || die "the Python packages did not install; rerun to see pip's errors"
    echo "$want" > "$stamp"
  fi
  export PATH="$PWD/.venv/bin:$PATH"
}

apt_install() {
  step "Installing Debian packages: $*"
  [ "$(id -u)" = 0 ] || die "installing $* needs root (or install them yourself and rerun)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() {  # wait_for NAME HOST PORT
  for _ in $(seq 1 60); do port_open "$2" "$3" && return 0; sleep 0.5; done
  die "$1 did not start listening on $2:$3 within 30 s"
}

# PostgreSQL, Redis and Mosquitto on their usual local ports: started if down, installed if missing.
ensure_services() {
  local missing=()
  command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v mosquitto >/dev/null || missing+=(mosquitto)
  command -v mosquitto_passwd >/dev/null || missing+=(mosquitto-clients)
  if ! port_open 127.0.0.1 5432 || ! port_open 127.0.0.1 6379 || ! port_open 127.0.0.1 1883; then
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
  fi
  if ! port_open 127.0.0.1 5432; then
    step "Starting PostgreSQL"
    local version; version=$(ls /etc/postgresql | sort -V | tail -n1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || die "PostgreSQL $version did not start"
    wait_for PostgreSQL 127.0.0.1 5432
  fi
  if command -v psql >/dev/null &&
     ! psql -q "postgres://postgres:postgres@127.0.0.1:5432/postgres" -c 'select 1' >/dev/null 2>&1; then
    step "Giving the postgres role a local password (fresh PostgreSQL install)"
    runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD 'postgres'" >&2 \
      || die "cannot reach PostgreSQL as postgres on 127.0.0.1:5432"
  fi
  if ! port_open 127.0.0.1 6379; then
    step "Starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log >&2 || die "Redis did not start"
    wait_for Redis 127.0.0.1 6379
  fi
  if ! port_open 127.0.0.1 1883; then
    step "Starting Mosquitto"
    mosquitto -d -c /etc/mosquitto/mosquitto.conf >&2 || die "Mosquitto did not start"
    wait_for Mosquitto 127.0.0.1 1883
  fi
}

# node_modules from package-lock.json (front-end assets, the JavaScript test client), when it changed.
ensure_node_modules() {
  command -v npm >/dev/null || apt_install nodejs npm
  local want; want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ "$(cat node_modules/.installed 2>/dev/null)" != "$want" ]; then
    step "Installing npm packages from package-lock.json"
    npm ci --no-audit --no-fund --loglevel=error >&2 || die "npm ci failed; rerun to see npm's errors"
    echo "$want" > node_modules/.installed
  fi
}

# Debian's Chromium, which the dashboard's browser tests drive through Playwright (never `playwright install`).
ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
}

# Debian's nginx, which the scale-out test runs in front of the server processes (docs/deploy/nginx/).
ensure_nginx() {
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx
}
