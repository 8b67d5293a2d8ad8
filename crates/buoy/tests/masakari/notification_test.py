"""Failure reports through Buoy's Masakari-compatible API, as an outside monitor sends them
with the real OpenStack client, and the recoveries they cause.

Usage: notification_test.py ENDPOINT INSTANCE_ID
  ENDPOINT      e.g. http://127.0.0.1:15868/v1
  INSTANCE_ID   an instance running on host h2 (h3 has room for it)
Exits non-zero, with the failing step, on any mismatch.
"""

import datetime
import sys
import time

import openstack

PAYLOAD_HOST = {"event": "STOPPED", "host_status": "NORMAL", "cluster_status": "OFFLINE"}


def wait_status(ha, nid, wanted, timeout=30):
    deadline = time.time() + timeout
    while True:
        n = ha.get_notification(nid)
        if n.status == wanted:
            return n
        if time.time() > deadline:
            raise AssertionError(f"notification {nid} is {n.status}, not {wanted}")
        time.sleep(0.2)


def main(url, instance):
    conn = openstack.connection.Connection(
        auth_type="none", auth={"endpoint": url}, instance_ha_endpoint_override=url
    )
    ha = conn.instance_ha
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")

    # A host that is alive in gossip reported stopped: Buoy moves nothing from it (rule S3).
    n1 = ha.create_notification(
        type="COMPUTE_HOST", hostname="h3", generated_time=now, payload=PAYLOAD_HOST
    )
    assert n1.status == "new", n1
    wait_status(ha, n1.id, "ignored")

    # An instance reported failed on h2: Buoy moves it to h3 and records the move.
    n2 = ha.create_notification(
        type="VM", hostname="h2", generated_time=now,
        payload={"event": "LIFECYCLE", "instance_uuid": instance,
                 "vir_domain_event": "STOPPED_FAILED"},
    )
    done = wait_status(ha, n2.id, "finished")
    moves = list(ha.vmoves(n2.id))
    assert len(moves) == 1, moves
    m = moves[0]
    assert (m.server_id, m.source_host, m.dest_host, m.status) == (
        instance, "h2", "h3", "succeeded"), m
    assert m.start_time and m.end_time, m
    one = ha.get_vmove(m.id, n2.id)
    assert one.id == m.id, one
    assert done.recovery_workflow_details, done
    print("masakari notification test: ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
