#!/bin/bash
# What host identity costs: `buoy bench control-plane` with identity on and off, interleaved
# (4 rounds of each, same period). Usage: bench/identity_cost.sh BUOY OUT.jsonl
set -u
buoy=${1:?path to the buoy binary}
out=${2:?output file}
: > "$out"
for r in 1 2 3 4; do
  for mode in on off; do
    flag=""; [ "$mode" = off ] && flag="--no-identity"
    "$buoy" bench control-plane --seconds 20 --renewals 2000 --json --net 91 $flag >> "$out" 2>/dev/null \
      || echo "{\"failed\": \"$mode $r\"}" >> "$out"
  done
done
