# What the shell benchmarks share (sourced, not run): paths, log/die, the test servers, a private moto.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sets ROOT, CACHE, SYNTH, FIXTURES, BIN, MOTO and PIDS (servers started here; the caller's EXIT trap kills them
# with kill_pids). Functions: log, die, ensure_servers (OpenSearch from .cache/run/env, scripts/testenv.sh start
# when it does not answer; sets OS and PY), start_moto WORKDIR (a moto server on a free loopback port, never the
# shared one; sets MOTO_URL), ensure_corpus N (ct_synth's N-record corpus, cached in .cache/bench/corpus-N; sets
# CORPUS).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache/bench"
SYNTH="${CT_SYNTH:-/work/shared/tools/ct_synth.py}"
FIXTURES="${CT_FIXTURES:-/work/shared/fixtures/cloudtrail}"
BIN="${TS_TRAILSETUP_BIN:-$ROOT/target/release/trailsetup}"
MOTO="$ROOT/.cache/venv/bin/moto_server"
PIDS=()

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
kill_pids() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }

[[ -x "$BIN" ]] || die "no trailsetup binary at $BIN (cargo build --release first)"

ensure_servers() {
  answers() { [[ -n "${TS_OPENSEARCH_URL:-}" ]] && curl -sf -o /dev/null "$TS_OPENSEARCH_URL"; }
  # shellcheck disable=SC1091
  [[ -f "$ROOT/.cache/run/env" ]] && source "$ROOT/.cache/run/env"
  if ! answers; then
    log "starting the test servers (scripts/testenv.sh start)"
    "$ROOT/scripts/testenv.sh" start
    # shellcheck disable=SC1091
    source "$ROOT/.cache/run/env"
    answers || die "OpenSearch does not answer at ${TS_OPENSEARCH_URL:-?}"
  fi
  OS="$TS_OPENSEARCH_URL"
  PY="${TS_PYTHON:-$ROOT/.cache/venv/bin/python}"
}

start_moto() { # WORKDIR
  [[ -x "$MOTO" ]] || die "no moto_server in .cache/venv (scripts/testenv.sh setup installs it)"
  local port
  port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  "$MOTO" -H 127.0.0.1 -p "$port" >"$1/moto.log" 2>&1 &
  PIDS+=($!)
  MOTO_URL="http://127.0.0.1:$port"
  for _ in $(seq 200); do curl -sf -o /dev/null "$MOTO_URL/moto-api/" && return 0; sleep 0.1; done
  die "moto did not start (see $1/moto.log)"
}

ensure_corpus() { # N_RECORDS
  CORPUS="$CACHE/corpus-$1"
  if [[ ! -f "$CORPUS/.done" ]]; then
    log "building a corpus of $1 records in $CORPUS"
    rm -rf "$CORPUS"
    python3 "$SYNTH" "$FIXTURES" "$CORPUS" --records "$1"
    touch "$CORPUS/.done"
  fi
}
