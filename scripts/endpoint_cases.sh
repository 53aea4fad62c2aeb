#!/usr/bin/env bash
# The endpoint test cases of the services src/aws/rpc.rs calls without their SDK crates (EC2, SSM, CloudWatch,
# Organizations), read from each crate's generated `config/endpoint.rs` in cargo's registry: service, region, FIPS,
# dual-stack → URL, one tab-separated line each. Checked in as tests/endpoint_cases.tsv, which rpc.rs's unit test
# `endpoints_match_every_case_of_the_rule_sets` reads; regenerate it after an SDK update:
#
#   scripts/endpoint_cases.sh > tests/endpoint_cases.tsv
#
# (the newest version of each crate in the registry; a crate no longer a dependency stays there once fetched)
set -euo pipefail
REG="${CARGO_HOME:-$HOME/.cargo}/registry/src"
for crate in ec2 ssm cloudwatch organizations; do
  dir=$(ls -d "$REG"/*/aws-sdk-"$crate"-1.* 2>/dev/null | sort -V | tail -1 || true)
  if [[ -z "$dir" ]]; then
    echo "aws-sdk-$crate: not in $REG (cargo fetch a project that depends on it)" >&2
    continue
  fi
  echo "# $(basename "$dir")"
  python3 - "$dir/src/config/endpoint.rs" "$crate" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
for m in re.finditer(r"/// For region (\S+) with FIPS (enabled|disabled) and DualStack (enabled|disabled)\n(.*?)Expected valid endpoint: (\S+?)\"", src, re.S):
    print(f"{sys.argv[2]}\t{m.group(1)}\t{m.group(2) == 'enabled'}\t{m.group(3) == 'enabled'}\t{m.group(5)}")
PY
done
