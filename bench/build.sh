#!/usr/bin/env bash
# Cold release build: wall time, CPU time and the slowest crates, for this tree and for a baseline commit, in one
# run (the baseline is built the same way, one after the other, never at the same time).
#
#   bench/build.sh                     this tree, and the baseline BENCH_BEFORE_REV (default cfa9004: the last
#                                      commit with aws-sdk-ec2, -ssm, -cloudwatch and -organizations)
#   BENCH_BEFORE_REV= bench/build.sh   this tree only
#   env: BENCH_TOP=12 (crates listed), BENCH_KEEP=1 (keep the target directories under .cache/bench/build)
#
# Each build is `cargo build --release --timings` into an empty target directory (the registry's sources are
# reused: no download is timed). The crate table comes from cargo's timing report (per-crate compile seconds,
# build scripts included). Run it on an idle machine: it measures whatever else the cores do. Nothing is asserted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$ROOT/.cache/bench/build"
BEFORE="${BENCH_BEFORE_REV-cfa9004}"
TOP="${BENCH_TOP:-12}"
log() { printf 'bench: %s\n' "$*" >&2; }

mkdir -p "$WORK"
rm -rf "${WORK:?}"/*

# build SRC LABEL: prints "LABEL wall_s user_s sys_s timing.html"
build() {
  local src="$1" label="$2" target="$WORK/target-$2" t0 t1
  log "cold build of $label ($src) into $target"
  t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$WORK/$label.time" \
    env CARGO_TARGET_DIR="$target" cargo build --release --timings --manifest-path "$src/Cargo.toml" >"$WORK/$label.log" 2>&1 ||
    { tail -20 "$WORK/$label.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$label $(echo "$t1 - $t0" | bc) $(cat "$WORK/$label.time") $(ls -t "$target"/cargo-timings/cargo-timing-*.html | head -1)"
}

rows=()
rows+=("$(build "$ROOT" now)")
if [[ -n "$BEFORE" ]]; then
  git -C "$ROOT" worktree remove --force "$WORK/src-before" 2>/dev/null || true
  git -C "$ROOT" worktree add --detach "$WORK/src-before" "$BEFORE" >/dev/null
  rows+=("$(build "$WORK/src-before" before)")
  git -C "$ROOT" worktree remove --force "$WORK/src-before"
fi

python3 - "$TOP" "$(nproc)" "$BEFORE" "${rows[@]}" <<'EOF'
import json, re, sys
top, cores, before = int(sys.argv[1]), sys.argv[2], sys.argv[3]
runs = []
for row in sys.argv[4:]:
    label, wall, user, sysc, html = row.split()
    units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", open(html).read(), re.S).group(1))
    per = {}
    for u in units:
        per[u["name"]] = per.get(u["name"], 0.0) + u["duration"]
    runs.append((label, float(wall), float(user) + float(sysc), per))
print(f"cold `cargo build --release`, {cores} cores" + (f"; before = {before}" if len(runs) > 1 else ""))
print(f"{'':28}" + "".join(f"{l:>12}" for l, *_ in runs))
print(f"{'wall (min:s)':28}" + "".join(f"{int(w // 60):>9}:{int(w % 60):02d}" for _, w, _, _ in runs))
print(f"{'CPU, user+sys (s)':28}" + "".join(f"{c:>12.0f}" for _, _, c, _ in runs))
print(f"{'crates compiled':28}" + "".join(f"{len(p):>12}" for *_, p in runs))
names = sorted(set().union(*(p.keys() for *_, p in runs)), key=lambda n: -max(p.get(n, 0) for *_, p in runs))[:top]
print(f"\nslowest crates (compile seconds; - = not built)")
for n in names:
    print(f"{n:28}" + "".join(f"{p[n]:>12.0f}" if n in p else f"{'-':>12}" for *_, p in runs))
if len(runs) > 1:
    (_, w0, c0, _), (_, w1, c1, _) = runs[0], runs[1]
    print(f"\nnow / before: wall {w0 / w1:.2f}x, CPU {c0 / c1:.2f}x")
EOF
[[ -n "${BENCH_KEEP:-}" ]] || rm -rf "$WORK"/target-*
