#!/usr/bin/env python3
"""Side by side on loopback: a 3-member etcd (Debian etcd-server) and 3 Buoy servers, driven by
the same writer: N threads, each doing one write at a time over a keep-alive HTTP connection to
the leader (etcd: its JSON gateway `POST /v3/kv/put`; Buoy: `POST /v1/segments`), for S seconds.
Prints writes/s and latency percentiles for both.

    python3 bench/etcd_vs_buoy.py [--clients 16] [--seconds 10] [--json]

Installs etcd-server (Debian package) when missing (needs root). Addresses: 127.0.78.x (etcd)
and 127.0.79.x (buoy). Every process it starts is killed by PID at the end. The writer is
Python for both systems, so absolute figures are below `buoy bench control-plane` (a Rust
writer); compare the two rows with each other.
"""
import argparse, base64, http.client, json, os, shutil, signal, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_etcd():
    if shutil.which("etcd"):
        return
    if os.geteuid() != 0:
        sys.exit("etcd is not installed; run as root so this script can apt-get install etcd-server")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "etcd-server"], check=True)


def ensure_buoy():
    exe = os.path.join(ROOT, "target", "release", "buoy")
    if not os.path.exists(exe):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    return exe


def wait_http(host, port, path, ok, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            c = http.client.HTTPConnection(host, port, timeout=2)
            c.request("GET" if path.startswith("/v1") else "POST", path, body=None if path.startswith("/v1") else "{}")
            r = c.getresponse()
            body = r.read()
            if ok(r.status, body):
                return body
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{host}:{port}{path} did not become ready")


def start_etcd(tmp):
    names = [f"e{i}" for i in range(1, 4)]
    peers = ",".join(f"{n}=http://127.0.78.{i}:2380" for i, n in enumerate(names, 1))
    procs = []
    for i, n in enumerate(names, 1):
        ip = f"127.0.78.{i}"
        log = open(os.path.join(tmp, f"{n}.log"), "w")
        procs.append(subprocess.Popen([
            "etcd", "--name", n, "--data-dir", os.path.join(tmp, n),
            "--listen-peer-urls", f"http://{ip}:2380", "--initial-advertise-peer-urls", f"http://{ip}:2380",
            "--listen-client-urls", f"http://{ip}:2379", "--advertise-client-urls", f"http://{ip}:2379",
            "--initial-cluster", peers, "--initial-cluster-state", "new", "--initial-cluster-token", "bench",
        ], stdout=log, stderr=log))
    # Find the leader through the maintenance status of each member.
    for _ in range(150):
        for i in range(1, 4):
            try:
                c = http.client.HTTPConnection(f"127.0.78.{i}", 2379, timeout=2)
                c.request("POST", "/v3/maintenance/status", body="{}")
                st = json.loads(c.getresponse().read())
                if st.get("leader") and st.get("leader") == st.get("header", {}).get("member_id"):
                    return procs, (f"127.0.78.{i}", 2379)
            except (OSError, ValueError):
                pass
        time.sleep(0.2)
    raise SystemExit("etcd elected no leader")


def start_buoy(exe, tmp):
    procs = []
    for i in range(1, 4):
        ip = f"127.0.79.{i}"
        log = open(os.path.join(tmp, f"b{i}.log"), "w")
        args = [exe, "agent", "--name", f"b{i}", "--profile", "local", "--bind", f"{ip}:7946", "--http", f"{ip}:7070",
                "--server", "--bootstrap-expect", "3", "--data-dir", os.path.join(tmp, f"b{i}")]
        if i > 1:
            args += ["--join", "127.0.79.1:7946"]
        procs.append(subprocess.Popen(args, stdout=log, stderr=log))
    body = wait_http("127.0.79.1", 7070, "/v1/status", lambda s, b: s == 200 and json.loads(b).get("leader"))
    leader = json.loads(body)["leader"]["http"].split(":")
    return procs, (leader[0], int(leader[1]))


def drive(target, request, clients, seconds):
    """`clients` threads in a closed loop for `seconds`; returns (writes, latencies in ms)."""
    lat, lock, stop = [], threading.Lock(), time.time() + seconds

    def worker(c):
        conn = http.client.HTTPConnection(*target, timeout=5)
        n, mine = 0, []
        while time.time() < stop:
            n += 1
            method, path, body = request(c, n)
            t = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                if 200 <= r.status < 300:
                    mine.append((time.perf_counter() - t) * 1000)
            except OSError:
                conn = http.client.HTTPConnection(*target, timeout=5)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(lat), sorted(lat)


def etcd_put(c, n):
    key = base64.b64encode(f"bench/{c}/{n}".encode()).decode()
    val = base64.b64encode(b'{"name":"x"}').decode()
    return "POST", "/v3/kv/put", json.dumps({"key": key, "value": val})


def buoy_put(c, n):
    return "POST", "/v1/segments", json.dumps({"name": f"b-{c}-{n}"})


def summary(name, writes, lat, seconds):
    pct = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else None
    return {"system": name, "writes": writes, "writes_per_s": round(writes / seconds),
            "latency_ms": {"p50": pct(0.50), "p99": pct(0.99), "max": pct(1.0)}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    ensure_etcd()
    exe = ensure_buoy()
    tmp = tempfile.mkdtemp(prefix="buoy-etcd-bench-")
    procs, rows = [], []
    try:
        eprocs, etarget = start_etcd(tmp)
        procs += eprocs
        rows.append(summary("etcd 3.4 (3 members)", *drive(etarget, etcd_put, a.clients, a.seconds), a.seconds))
        bprocs, btarget = start_buoy(exe, tmp)
        procs += bprocs
        rows.append(summary("buoy (3 servers)", *drive(btarget, buoy_put, a.clients, a.seconds), a.seconds))
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['system']:<22} {r['writes_per_s']:>6} writes/s   p50 {r['latency_ms']['p50']} ms   p99 {r['latency_ms']['p99']} ms")


if __name__ == "__main__":
    main()
