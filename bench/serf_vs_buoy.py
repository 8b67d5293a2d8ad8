#!/usr/bin/env python3
"""Side by side on loopback: 16 HashiCorp Serf agents (memberlist inside) and 16 Buoy agents,
both on their LAN profiles. Each round kills the same host of both clusters with SIGKILL at the
same moment and measures, for each, the time until the first and until every live observer
sees it failed/dead; then restarts the victims and waits for both clusters to heal.

    python3 bench/serf_vs_buoy.py [--agents 16] [--rounds 5] [--json]

Installs serf (Debian package) when missing (needs root). Addresses: 127.0.51.x (serf) and
127.0.52.x (buoy). Every process it starts is killed by PID at the end.
"""
import argparse, json, os, random, shutil, signal, subprocess, sys, tempfile, threading, time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_serf():
    if shutil.which("serf"):
        return
    if os.geteuid() != 0:
        sys.exit("serf is not installed; run as root so this script can apt-get install it")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "serf"], check=True)


def ensure_buoy():
    exe = os.path.join(ROOT, "target", "release", "buoy")
    if not os.path.exists(exe):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    return exe


class Serf:
    name = "serf"

    def __init__(self, n, logdir):
        self.n, self.logdir, self.procs = n, logdir, {}

    def ip(self, i):
        return f"127.0.51.{i}"

    def start(self, i):
        log = open(os.path.join(self.logdir, f"serf-{i}.log"), "w")
        cmd = ["serf", "agent", f"-node=s{i}", f"-bind={self.ip(i)}:7946", f"-rpc-addr={self.ip(i)}:7373",
               "-profile=lan", "-log-level=warn"]
        if i != 1:
            cmd.append(f"-join={self.ip(1)}:7946")
        self.procs[i] = subprocess.Popen(cmd, stdout=log, stderr=log)

    def view(self, i):
        try:
            out = subprocess.run(["serf", "members", f"-rpc-addr={self.ip(i)}:7373", "-format=json"],
                                 capture_output=True, timeout=5).stdout
            return {m["name"]: m["status"] for m in json.loads(out)["members"]}
        except Exception:
            return {}

    def member(self, i):
        return f"s{i}"

    dead = "failed"
    alive = "alive"


class Buoy:
    name = "buoy"

    def __init__(self, n, logdir, exe):
        self.n, self.logdir, self.exe, self.procs = n, logdir, exe, {}

    def ip(self, i):
        return f"127.0.52.{i}"

    def start(self, i):
        log = open(os.path.join(self.logdir, f"buoy-{i}.log"), "w")
        cmd = [self.exe, "agent", "--name", f"h{i}", "--bind", f"{self.ip(i)}:7946", "--http", f"{self.ip(i)}:7070",
               "--profile", "lan"]
        if i != 1:
            cmd += ["--join", f"{self.ip(1)}:7946"]
        self.procs[i] = subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})

    def view(self, i):
        try:
            with urllib.request.urlopen(f"http://{self.ip(i)}:7070/v1/members", timeout=2) as r:
                return {m["name"]: m["state"] for m in json.load(r)["members"]}
        except Exception:
            return {}

    def member(self, i):
        return f"h{i}"

    dead = "dead"
    alive = "alive"


def all_alive(c, n):
    return all(sum(1 for s in c.view(i).values() if s == c.alive) == n for i in range(1, n + 1))


def watch(c, victim, observers, t0, out):
    """Polls every observer until all see the victim dead; records first and all times."""
    first = None
    seen = set()
    while time.monotonic() - t0 < 60:
        for o in observers:
            if o not in seen and c.view(o).get(c.member(victim)) == c.dead:
                seen.add(o)
                first = first or time.monotonic() - t0
        if len(seen) == len(observers):
            out[c.name] = {"first_ms": round(first * 1000), "all_ms": round((time.monotonic() - t0) * 1000)}
            return
        time.sleep(0.02)
    out[c.name] = {"first_ms": None, "all_ms": None}


def pct(xs, p):
    xs = sorted(x for x in xs if x is not None)
    return xs[min(len(xs) - 1, max(0, int(round(p * len(xs) + 0.5)) - 1))] if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    ensure_serf()
    exe = ensure_buoy()
    logdir = tempfile.mkdtemp(prefix="serf-vs-buoy-")
    rng = random.Random(a.seed)
    clusters = [Serf(a.agents, logdir), Buoy(a.agents, logdir, exe)]
    runs = []
    try:
        for c in clusters:
            for i in range(1, a.agents + 1):
                c.start(i)
                time.sleep(0.05)
        for c in clusters:
            t = time.monotonic()
            while not all_alive(c, a.agents):
                if time.monotonic() - t > 60:
                    sys.exit(f"{c.name} cluster did not form; logs in {logdir}")
                time.sleep(0.2)
        for r in range(a.rounds):
            victim = rng.randrange(2, a.agents + 1)
            observers = [i for i in range(1, a.agents + 1) if i != victim]
            t0 = time.monotonic()
            for c in clusters:
                c.procs[victim].send_signal(signal.SIGKILL)
            out = {}
            threads = [threading.Thread(target=watch, args=(c, victim, observers, t0, out)) for c in clusters]
            [t.start() for t in threads]
            [t.join() for t in threads]
            runs.append({"round": r + 1, "victim": victim, **out})
            if not a.json:
                print(f"round {r + 1}: killed host {victim}: " + ", ".join(
                    f"{k} first {v['first_ms']} ms / all {v['all_ms']} ms" for k, v in out.items()), flush=True)
            for c in clusters:
                c.procs[victim].wait()
                c.start(victim)
            for c in clusters:
                t = time.monotonic()
                while not all_alive(c, a.agents) and time.monotonic() - t < 90:
                    time.sleep(0.2)
            time.sleep(2)
    finally:
        for c in clusters:
            for p in c.procs.values():
                p.kill()
                p.wait()
    summary = {c.name: {k: {"p50": pct([r[c.name][k] for r in runs], 0.5), "max": pct([r[c.name][k] for r in runs], 1.0)}
                        for k in ("first_ms", "all_ms")} for c in clusters}
    result = {"agents": a.agents, "rounds": a.rounds, "seed": a.seed, "summary": summary, "runs": runs}
    print(json.dumps(result, indent=None if a.json else 2))
    shutil.rmtree(logdir, ignore_errors=True)


if __name__ == "__main__":
    main()
