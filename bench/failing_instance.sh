#!/bin/bash
# Usage: bench/failing_instance.sh BUOY NET: a sandbox without its demo, one instance that can
# never start (/bin/false, max_restarts 0), and after 20 s: the VM recovery records by status and
# how many Raft entries the cluster wrote meanwhile (issue 16: before, it moved forever).
B=$1; NET=$2; export BUOY_HTTP_ADDR=127.0.$NET.1:7070
$B sandbox --no-demo --duration 60 --net $NET > /dev/null 2>&1 &
SB=$!
for i in $(seq 1 60); do curl -sf http://127.0.$NET.1:7070/v1/status >/dev/null && break; sleep 1; done; sleep 6
sleep 3
i0=$(curl -s http://127.0.$NET.1:7070/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["raft"]["last_applied"])')
$B instance create broken --segment zone-a --driver process --set params.command=/bin/false --set max_restarts=0 >/dev/null
sleep 20
curl -s "http://127.0.$NET.1:7070/v1/notifications?limit=10000" | python3 -c '
import json,sys,collections
n=[x for x in json.load(sys.stdin)["notifications"] if x["type"]=="VM"]
print("vm_notifications", len(n), dict(collections.Counter(x["status"] for x in n)))'
i1=$(curl -s http://127.0.$NET.1:7070/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["raft"]["last_applied"])')
echo "raft_entries_in_20s $((i1-i0))"
kill -INT $SB; wait $SB
