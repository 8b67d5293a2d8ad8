"""Drives Buoy's Masakari-compatible API with the real OpenStack client (openstacksdk's
instance-ha proxy, as python-masakariclient uses it), without Keystone.

Usage: client_test.py ENDPOINT   (e.g. http://127.0.0.1:15868/v1)
Exits non-zero, with the failing step, on any mismatch.
"""

import sys

import openstack
from openstack import exceptions


def main(url):
    conn = openstack.connection.Connection(
        auth_type="none",
        auth={"endpoint": url},
        instance_ha_endpoint_override=url,
    )
    ha = conn.instance_ha

    seg = ha.create_segment(
        name="zone-a", recovery_method="auto", service_type="compute", description="rack 3"
    )
    assert seg.name == "zone-a" and seg.is_enabled, seg
    assert [s.name for s in ha.segments()] == ["zone-a"]
    seg = ha.update_segment(seg, description="rack 4", recovery_method="reserved_host")
    got = ha.get_segment(seg.id)
    assert (got.description, got.recovery_method) == ("rack 4", "reserved_host"), got

    host = ha.create_host(
        seg.id, name="node-1", type="COMPUTE", control_attributes="ssh",
        reserved=False, on_maintenance=False,
    )
    assert host.name == "node-1"
    ha.create_host(seg.id, name="node-2", type="COMPUTE", control_attributes="ssh")
    assert sorted(h.name for h in ha.hosts(seg.id)) == ["node-1", "node-2"]
    ha.update_host(host.id, seg.id, reserved=True)
    assert ha.get_host(host.id, seg.id).reserved is True

    payload = {"event": "STOPPED", "host_status": "NORMAL", "cluster_status": "OFFLINE"}
    n = ha.create_notification(
        type="COMPUTE_HOST", hostname="node-1",
        generated_time="2026-11-21T10:00:00.000000", payload=payload,
    )
    assert n.status == "new" and n.hostname == "node-1", n
    assert [x.id for x in ha.notifications()] == [n.id]
    assert ha.get_notification(n.id).source_host_uuid == host.id

    # The same failure again within 180 s is a duplicate.
    try:
        ha.create_notification(
            type="COMPUTE_HOST", hostname="node-1",
            generated_time="2026-11-21T10:01:00.000000", payload=payload,
        )
        raise AssertionError("a duplicate notification was accepted")
    except exceptions.ConflictException:
        pass

    # A host on maintenance takes no notifications.
    node2 = [h for h in ha.hosts(seg.id) if h.name == "node-2"][0]
    ha.update_host(node2.id, seg.id, on_maintenance=True)
    try:
        ha.create_notification(
            type="COMPUTE_HOST", hostname="node-2",
            generated_time="2026-11-21T11:00:00.000000", payload=payload,
        )
        raise AssertionError("a notification for a host on maintenance was accepted")
    except exceptions.ConflictException:
        pass

    # A segment that still has hosts cannot go; once empty it can.
    try:
        ha.delete_segment(seg.id)
        raise AssertionError("a segment with hosts was deleted")
    except exceptions.ConflictException:
        pass
    for h in list(ha.hosts(seg.id)):
        ha.delete_host(h.id, seg.id)
    ha.delete_segment(seg.id)
    assert list(ha.segments()) == []
    try:
        ha.get_segment(seg.id)
        raise AssertionError("a deleted segment was found")
    except exceptions.NotFoundException:
        pass
    print("masakari client test: ok")


if __name__ == "__main__":
    main(sys.argv[1])
