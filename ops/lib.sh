# Shared by ops/run and ops/test: install Debian packages that are missing.
need_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${missing[*]}" >&2
    echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "Installing ${missing[*]} ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
need_cargo() {
  command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: install Rust from https://rustup.rs (1.85 or newer)" >&2; exit 1; }
}
# Start the Debian PostgreSQL cluster and make a role and database for the tests; exports
# DINH_TEST_DATABASE_URL. Tests give each case a schema of its own inside that database.
start_postgres() {
  local ver
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  if ! pg_lsclusters -h | grep -q .; then
    pg_createcluster "$ver" main >/dev/null
  fi
  local cluster
  cluster=$(pg_lsclusters -h | head -1 | awk '{print $1" "$2}')
  pg_ctlcluster $cluster start 2>/dev/null || true
  for _ in $(seq 1 30); do
    runuser -u postgres -- psql -qtAc "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.5
  done
  runuser -u postgres -- psql -qtAc "SELECT 1 FROM pg_roles WHERE rolname='dinh'" | grep -q 1 ||
    runuser -u postgres -- psql -qc "CREATE ROLE dinh LOGIN PASSWORD 'dinh'"
  runuser -u postgres -- psql -qtAc "SELECT 1 FROM pg_database WHERE datname='dinh_test'" | grep -q 1 ||
    runuser -u postgres -- psql -qc "CREATE DATABASE dinh_test OWNER dinh"
  export DINH_TEST_DATABASE_URL="postgres://dinh:dinh@127.0.0.1:5432/dinh_test"
}
