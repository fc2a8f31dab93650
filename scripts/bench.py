#!/usr/bin/env python3
"""Issue 13 benchmarks: latency as the data grows, throughput as connections grow.

  scripts/bench-growth.sh        # = scripts/bench.py growth
  scripts/bench-connections.sh   # = scripts/bench.py connections

Each run starts its own throwaway PostgreSQL 15 (Unix socket only, default
durability, shared_buffers 256MB, like ../shared/bench/compare), runs dave's
migrations with the release binary, fills the database with
scripts/bench-data.sql (generate_series only), starts the service(s) and
measures with wrk; pgbench runs the same SQL straight on the database as the
limit. The JSON goes to docs/bench-results/; scripts/charts.py draws it.
Python 3 standard library only. Only processes started here are stopped.
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import platform
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_SQL = ROOT / "scripts" / "bench-data.sql"
SHARED = ROOT.parent / "shared"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PYREF = SHARED / "anchors" / "python-reference"
LIB = SHARED / "bench" / "lib"
CHILDREN: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def start(argv, **kw) -> subprocess.Popen:
    p = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL, **kw)
    CHILDREN.append(p)
    return p


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)  # its own session: only what we started
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)
    if p in CHILDREN:
        CHILDREN.remove(p)


def run(argv, timeout=900, **kw) -> str:
    p = start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(p)
        raise SystemExit(f"{argv[0]} took longer than {timeout} s")
    CHILDREN.remove(p)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))[:200]} failed ({p.returncode}):\n{out[-3000:]}")
    return out


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def busy_s() -> float:
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / os.sysconf("SC_CLK_TCK")


def steal_s() -> float:
    """CPU time the hypervisor gave to other guests: on a shared host, a measurement with
    steal above a few percent ran on a slower machine than its neighbours."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return f[7] / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    total, pids = 0, [root]
    kids: dict[int, list[int]] = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                st = Path(f"/proc/{e}/stat").read_text()
            except OSError:
                continue
            f = st[st.rfind(")") + 2:].split()
            kids.setdefault(int(f[1]), []).append(int(e))
    i = 0
    while i < len(pids):
        pids.extend(kids.get(pids[i], []))
        i += 1
    for pid in pids:
        try:
            st = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        f = st[st.rfind(")") + 2:].split()
        total += sum(int(x) for x in f[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    try:
        m = re.search(r"^VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


# ---- PostgreSQL -------------------------------------------------------------------------

class Cluster:
    def __init__(self, root: Path, max_connections: int) -> None:
        self.root, self.data, self.sock = root, root / "pgdata", root / "sock"
        root.mkdir()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(root, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        run(self.as_user + [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                            "--auth=trust", "-E", "UTF8", "--locale=C"])
        run(self.as_user + ["mkdir", "-p", str(self.sock)])
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{self.sock}'\n"
                    f"max_connections = {max_connections}\nshared_buffers = 256MB\n")
        run(self.as_user + [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
                            str(root / "postgres.log"), "-w", "-t", "60", "start"])
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def dsn(self, db: str) -> str:
        return f"postgresql://postgres@/{db}?host={self.sock}"

    def psql(self, db: str, *sql: str, file: Path | None = None, variables: dict | None = None) -> str:
        argv = [str(PG_BIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(self.sock),
                "-U", "postgres", "-d", db]
        for k, v in (variables or {}).items():
            argv += ["-v", f"{k}={v}"]
        for s in sql:
            argv += ["-c", s]
        if file:
            argv += ["-f", str(file)]
        return run(argv, timeout=1800)

    def stop(self) -> None:
        run(self.as_user + [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])


def level_sizes(msgs: int) -> dict:
    """What a level holds: the messages, a twentieth of them as the heavy user's
    conversations, a tenth in the deep conversation, a tenth as articles."""
    return {"msgs": msgs, "heavy_convs": msgs // 20, "deep_msgs": msgs // 10, "knowledge": msgs // 10}


def populate(cluster: Cluster, db: str, dave: str, sizes: dict) -> float:
    cluster.psql("postgres", f"CREATE DATABASE {db}")
    env = dict(os.environ, DAVE_DB_DSN=cluster.dsn(db), APP_ENVIRONMENT="production")
    run([dave, "migrate", "up"], env=env)
    t = time.monotonic()
    cluster.psql(db, file=DATA_SQL, variables=sizes)
    return round(time.monotonic() - t, 1)


# ---- services ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jwt(secret: str, sub: str) -> str:
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    head = enc(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    body = enc(json.dumps({"sub": sub, "iat": now, "exp": now + 86400}).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{enc(sig)}"


class Service:
    def __init__(self, name: str, argv: list[str], dsn: str, logdir: Path, cwd=None) -> None:
        self.name, self.port = name, free_port()
        self.secret = secrets.token_hex(32)
        env = dict(os.environ, PORT=str(self.port), HOST="127.0.0.1", DAVE_DB_DSN=dsn, DATABASE_URL=dsn,
                   JWT_SECRET=self.secret, SESSION_SECRET=secrets.token_hex(32),
                   APP_ENVIRONMENT="production", ACCESS_LOG="false")
        self.log = open(logdir / f"{name}-{self.port}.log", "w")
        self.proc = start(argv, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited: see {self.log.name}")
            try:
                if self.get("/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"{name} not ready in 60 s")

    def get(self, path: str, token: str | None = None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def walk(self, path: str, token: str, pages: int) -> tuple[str | None, int]:
        """The cursor of page `pages` + 1 (following next_cursor), or the deepest one."""
        cursor, depth = None, 0
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sep = "&" if "?" in path else "?"
        for _ in range(pages):
            url = path + (f"{sep}cursor={urllib.parse.quote(cursor)}" if cursor else "")
            c.request("GET", url, headers={"Authorization": f"Bearer {token}"})
            r = c.getresponse()
            body = json.loads(r.read())
            nxt = body.get("next_cursor")
            if not nxt:
                break
            cursor, depth = nxt, depth + 1
        c.close()
        return cursor, depth

    def stop(self) -> None:
        stop(self.proc)
        self.log.close()


def start_service(name: str, cluster: Cluster, db: str, dave: str, logdir: Path, python: str | None):
    if name == "dave":
        return Service("dave", [dave, "serve"], cluster.dsn(db), logdir)
    # The harness's preset: uvicorn, 2 workers, access log off.
    cmd = (f"exec {python} -m uvicorn app.main:app --host 127.0.0.1 --port \"$PORT\" --no-access-log "
           "--log-level warning --workers 2")
    return Service("python", ["bash", "-c", cmd], cluster.dsn(db), logdir, cwd=str(PYREF))


# ---- load -------------------------------------------------------------------------------

WRK_LUA = """
local paths = {%s}
local hdrs = {["Authorization"] = %s, ["Content-Type"] = "application/json"}
local method, body = %s, %s
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format(method, paths[i], hdrs, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d,"max_us":%%d,"mean_us":%%.1f,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def lua_str(s: str | None) -> str:
    return "nil" if s is None else json.dumps(s)


def wrk(svc: Service, paths: list[str], token: str | None, connections: int, duration: int, tmp: Path,
        method="GET", body=None, warmup=1, threads=1) -> dict:
    script = tmp / f"w{secrets.token_hex(4)}.lua"
    script.write_text(WRK_LUA % (", ".join(lua_str(p) for p in paths),
                                 lua_str(f"Bearer {token}" if token else ""), lua_str(method), lua_str(body)))
    url = f"http://127.0.0.1:{svc.port}"
    base = ["wrk", f"-t{threads}", f"-c{connections}", "--timeout", "5s", "-s", str(script)]
    if warmup:
        run(base + [f"-d{warmup}s", url], timeout=warmup + 60)
    peak = [rss_kib(svc.proc.pid)]
    cpu0, busy0, steal0, t0 = tree_cpu_s(svc.proc.pid), busy_s(), steal_s(), time.monotonic()
    p = start(base + [f"-d{duration}s", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while p.poll() is None:
        peak.append(rss_kib(svc.proc.pid))
        time.sleep(0.25)
    out = p.communicate()[0]
    CHILDREN.remove(p)
    wall = time.monotonic() - t0
    m = re.search(r"^WRKJSON (.*)$", out, re.M)
    if not m:
        raise SystemExit(f"wrk said:\n{out}")
    r = json.loads(m.group(1))
    n = max(r["requests"], 1)
    return {"rps": round(r["requests"] / (r["duration_us"] / 1e6), 1), "requests": r["requests"],
            "p50_ms": r["p50_us"] / 1000, "p90_ms": r["p90_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "max_ms": r["max_us"] / 1000, "mean_ms": round(r["mean_us"] / 1000, 3),
            "errors": r["connect"] + r["read"] + r["write"] + r["timeout"], "non2xx": r["status"],
            "svc_cpu_us_per_req": round((tree_cpu_s(svc.proc.pid) - cpu0) / n * 1e6, 1),
            "host_busy_pct": round(100 * (busy_s() - busy0) / wall / (os.cpu_count() or 1), 1),
            "steal_pct": round(100 * (steal_s() - steal0) / wall / (os.cpu_count() or 1), 1),
            "rss_peak_kib": max(peak), "rss_after_kib": rss_kib(svc.proc.pid),
            "connections": connections}


def pgbench(cluster: Cluster, db: str, script: Path, clients: int, duration: int, tmp: Path,
            defines: dict) -> dict:
    logdir = tmp / f"pgb{secrets.token_hex(3)}"
    logdir.mkdir()
    os.chmod(logdir, 0o777)
    argv = [str(PG_BIN / "pgbench"), "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
            "-T", str(duration), "-h", str(cluster.sock), "-U", "postgres", "-f", str(script), "-l",
            "--log-prefix", str(logdir / "log")]
    if clients > 1:
        # A log line per transaction costs pgbench a share of the CPU the limit is about
        # (as ../shared/bench/compare: a tenth of them is plenty for percentiles).
        argv += ["--sampling-rate=0.1"]
    for k, v in defines.items():
        argv += ["-D", f"{k}={v}"]
    out = run(argv + [db], timeout=duration + 120)
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    lat = []
    for f in logdir.glob("log*"):
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1000)
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(len(lat) * q / 100))] if lat else None  # noqa: E731
    return {"tps": tps, "p50_ms": pct(50), "p99_ms": pct(99), "transactions": int(re.search(
        r"number of transactions actually processed: (\d+)", out).group(1)), "sampled": len(lat), "clients": clients}


def meta(args) -> dict:
    cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "host": platform.node(),
            "cpus": os.cpu_count(), "cpu_model": cpu.group(1) if cpu else "?", "kernel": platform.release(),
            "load_average_start": load_average(), "argv": sys.argv[1:],
            "postgres": "15 (throwaway cluster: fsync/synchronous_commit on, shared_buffers 256MB)"}


# ---- the two benchmarks -----------------------------------------------------------------

KNOWLEDGE_PGBENCH = ROOT / "scripts" / "knowledge-search.pgbench"


def growth_cases(svc: "Service", tok: str, sizes: dict, args) -> dict:
    """The growth workloads for one service on one level: (paths, method, body) by case."""
    fmt = lambda h: f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"  # noqa: E731
    deep = fmt(hashlib.md5(b"conv-1-1").hexdigest())
    convs = [fmt(hashlib.md5(f"conv-1-{c}".encode()).hexdigest())
             for c in range(1, min(sizes["heavy_convs"], 1000) + 1)]
    depth_c, depth_m = min(args.depth, sizes["heavy_convs"] // 20 - 1), \
        min(args.depth, sizes["deep_msgs"] // 20 - 1)
    cur_c, got_c = svc.walk("/api/v1/conversations?limit=20", tok, depth_c)
    cur_m, got_m = svc.walk(f"/api/v1/conversations/{deep}/messages?limit=20", tok, depth_m)
    q = lambda c: "&cursor=" + urllib.parse.quote(c) if c else ""  # noqa: E731
    cases = {
        "get_conversation": ([f"/api/v1/conversations/{c}" for c in convs], "GET", None),
        "list_first": (["/api/v1/conversations?limit=20"], "GET", None),
        "list_deep": ([f"/api/v1/conversations?limit=20{q(cur_c)}"], "GET", None),
        "messages_first": ([f"/api/v1/conversations/{deep}/messages?limit=20"], "GET", None),
        "messages_deep": ([f"/api/v1/conversations/{deep}/messages?limit=20{q(cur_m)}"], "GET", None),
        "knowledge_common": (["/api/v1/knowledge?q=postgresql&limit=10"], "GET", None),
        "knowledge_rare": (["/api/v1/knowledge?q=quasar&limit=10"], "GET", None),
        "knowledge_two_common": (["/api/v1/knowledge?q=postgresql+guidance&limit=10"], "GET", None),
        "post_message": ([f"/api/v1/conversations/{c}/messages" for c in convs[1:]], "POST",
                         json.dumps({"role": "user", "content": "How big should the pool be?",
                                     "resources": ["doc:pool"], "follow_up_suggestions": [],
                                     "metadata": {"bench": True}})),
    }
    return {"cases": cases, "depth": {"list_deep": got_c, "messages_deep": got_m}}


def growth_round(args, tmp: Path, cluster: Cluster, db: str, sizes: dict, name: str) -> dict:
    """One service's cells on one level: start it, walk to the deep pages, wrk each case."""
    user1 = hashlib.md5(b"user-1").hexdigest()
    user1 = f"{user1[:8]}-{user1[8:12]}-{user1[12:16]}-{user1[16:20]}-{user1[20:]}"
    svc = start_service(name, cluster, db, args.dave, tmp, args.python_bin)
    try:
        tok = jwt(svc.secret, user1)
        plan = growth_cases(svc, tok, sizes, args)
        row = {}
        for case, (paths, method, body) in plan["cases"].items():
            if args.only and case not in args.only:
                continue
            status = svc.get(paths[0], tok)[0] if method == "GET" else None
            r = wrk(svc, paths, tok, 1, args.duration, tmp, method=method, body=body)
            r["preflight_status"] = status
            if case in plan["depth"]:
                r["depth_pages"] = plan["depth"][case]
            row[case] = r
            log(f"  {name} {case}: p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms "
                f"({r['requests']} req, load {load_average()[0]:.2f}, steal {r['steal_pct']:.0f} %)")
        return row
    finally:
        svc.stop()


def median_round(rounds: list[dict]) -> dict:
    """Each case's cell from the round with its median p99, every round's p50 and p99 kept."""
    out = {}
    for case in rounds[0]:
        cells = [r[case] for r in rounds if case in r]
        cell = dict(sorted(cells, key=lambda c: c["p99_ms"])[len(cells) // 2])
        if len(cells) > 1:
            cell["p50_rounds"] = [c["p50_ms"] for c in cells]
            cell["p99_rounds"] = [c["p99_ms"] for c in cells]
            cell["errors_all_rounds"] = sum(c["errors"] for c in cells)
        out[case] = cell
    return out


def growth(args, tmp: Path, cluster: Cluster) -> dict:
    """Every level is populated first; then each round measures every level in turn (with
    --rounds N, levels interleaved as for connections, so a host that drifts between
    minutes moves every level alike), and each cell is its round with the median p99."""
    report = {"meta": meta(args), "kind": "growth", "rounds": args.rounds, "levels": []}
    services = ["dave"] + (["python"] if args.python else [])
    levels = []
    for msgs in args.levels:
        sizes = level_sizes(msgs)
        log(f"level {msgs}: populating {sizes}")
        db = f"growth_{msgs}"
        secs = populate(cluster, db, args.dave, sizes)
        levels.append({"db": db, "level": {"sizes": sizes, "populate_s": secs, "services": {},
                                           "limits": {}}, "rounds": {n: [] for n in services}})
    for rnd in range(1, args.rounds + 1):
        for entry in levels:
            level = entry["level"]
            log(f"round {rnd}, level {level['sizes']['msgs']}")
            level.setdefault("load_average_rounds", []).append(load_average())
            for name in services:
                entry["rounds"][name].append(
                    growth_round(args, tmp, cluster, entry["db"], level["sizes"], name))
    for entry in levels:
        level, db, sizes = entry["level"], entry["db"], entry["level"]["sizes"]
        level["load_average"] = level["load_average_rounds"][0]
        for name in services:
            level["services"][name] = median_round(entry["rounds"][name])
        if KNOWLEDGE_PGBENCH.exists() and not args.no_pgbench:
            for case, term in (("knowledge_common", "postgresql"), ("knowledge_rare", "quasar"),
                               ("knowledge_two_common", "postgresql guidance")):
                level["limits"][case] = pgbench(
                    cluster, db, KNOWLEDGE_PGBENCH, 1, args.duration, tmp, {"term": term, "page": 10})
            level["limits"]["get_conversation"] = pgbench(
                cluster, db, LIB / "by_id.pgbench", 1, args.duration, tmp,
                {"sample_users": 1, "convs": min(sizes["heavy_convs"], 1000)})
            level["limits"]["list_first"] = pgbench(cluster, db, LIB / "list.pgbench", 1, args.duration, tmp,
                                                    {"sample_users": 1})
            level["limits"]["post_message"] = pgbench(
                cluster, db, LIB / "message.pgbench", 1, args.duration, tmp,
                {"sample_users": 1, "convs": min(sizes["heavy_convs"], 1000)})
        report["levels"].append(level)
        if not args.keep_data:
            cluster.psql("postgres", f"DROP DATABASE {db}")
    return report


def connections(args, tmp: Path, cluster: Cluster) -> dict:
    report = {"meta": meta(args), "kind": "connections", "rounds": args.rounds, "runs": {}, "limits": {}}
    sizes = level_sizes(args.conn_level)
    db = "conns"
    log(f"populating {sizes}")
    populate(cluster, db, args.dave, sizes)
    fmt = lambda h: f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"  # noqa: E731
    user1 = fmt(hashlib.md5(b"user-1").hexdigest())
    convs = [fmt(hashlib.md5(f"conv-1-{c}".encode()).hexdigest())
             for c in range(1, min(sizes["heavy_convs"], 1000) + 1)]
    services = ["dave"] + (["python"] if args.python else [])
    for name in services:
        svc = start_service(name, cluster, db, args.dave, tmp, args.python_bin)
        try:
            tok = jwt(svc.secret, user1)
            runs = {}
            for case, paths, token in (("get_conversation", [f"/api/v1/conversations/{c}" for c in convs], tok),
                                       ("health", ["/health/ready"], None)):
                # Rounds go through every level in turn, so a host that speeds up or slows down
                # between minutes moves every level alike; each cell is its median round.
                by_level: dict[int, list[dict]] = {c: [] for c in args.connections}
                for rnd in range(1, args.rounds + 1):
                    for c in args.connections:
                        r = wrk(svc, paths, token, c, args.duration, tmp, warmup=2)
                        r["load_average"] = load_average()
                        by_level[c].append(r)
                        log(f"  {name} {case} c={c} round {rnd}: {r['rps']:.0f} req/s p50 {r['p50_ms']:.2f} "
                            f"p99 {r['p99_ms']:.2f} errors {r['errors']} non2xx {r['non2xx']} RSS peak "
                            f"{r['rss_peak_kib'] / 1024:.1f} MiB (load {load_average()[0]:.2f}, "
                            f"steal {r['steal_pct']:.0f} %)")
                for c, rounds in by_level.items():
                    median = dict(sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2])
                    if len(rounds) > 1:
                        median["rps_rounds"] = [r["rps"] for r in rounds]
                        median["errors_all_rounds"] = sum(r["errors"] for r in rounds)
                    runs.setdefault(case, {})[str(c)] = median
            # The knowledge search under load against its own limit (pgbench, same clients):
            # the one workload ../shared/bench/compare does not have.
            r = wrk(svc, ["/api/v1/knowledge?q=postgresql&limit=10"], tok, 32, args.duration, tmp, warmup=2)
            r["load_average"] = load_average()
            runs["knowledge_common"] = {"32": r}
            log(f"  {name} knowledge_common c=32: {r['rps']:.0f} req/s p50 {r['p50_ms']:.2f} p99 "
                f"{r['p99_ms']:.2f} errors {r['errors']} non2xx {r['non2xx']}")
            runs["rss_idle_kib"] = rss_kib(svc.proc.pid)
            report["runs"][name] = runs
        finally:
            svc.stop()
    if not args.no_pgbench:
        for c in (32,):
            report["limits"][f"get_conversation_c{c}"] = pgbench(
                cluster, db, LIB / "by_id.pgbench", c, args.duration, tmp,
                {"sample_users": 1, "convs": min(sizes["heavy_convs"], 1000)})
            report["limits"][f"health_c{c}"] = pgbench(cluster, db, LIB / "health.pgbench", c, args.duration,
                                                       tmp, {})
            report["limits"][f"knowledge_common_c{c}"] = pgbench(
                cluster, db, KNOWLEDGE_PGBENCH, c, args.duration, tmp, {"term": "postgresql", "page": 10})
    return report


def knowledge(args, tmp: Path, cluster: Cluster) -> dict:
    """Before/after of the knowledge search on the database alone: pgbench, one client,
    prepared (the generic plan after the fifth execution, as the service's statement
    cache), the query before issue 13 and the one dave runs now, at each article count."""
    report = {"meta": meta(args), "kind": "knowledge", "rows": []}
    before = ROOT / "scripts" / "knowledge-search-before.pgbench"
    for docs in args.articles:
        db = f"kb_{docs}"
        populate(cluster, db, args.dave, {"msgs": 0, "heavy_convs": 0, "deep_msgs": 0, "knowledge": docs})
        for query, script in (("before", before), ("after", KNOWLEDGE_PGBENCH)):
            for term in ("postgresql", "quasar", "postgresql guidance"):
                r = pgbench(cluster, db, script, 1, args.duration, tmp, {"term": term, "page": 10})
                r.update(articles=docs, query=query, term=term, load_average=load_average())
                report["rows"].append(r)
                log(f"  {docs} articles, {query}, {term}: p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms "
                    f"({r['transactions']} tx, load {load_average()[0]:.2f})")
        cluster.psql("postgres", f"DROP DATABASE {db}")
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["growth", "connections", "knowledge"])
    ap.add_argument("--articles", default="1000,10000,100000", help="knowledge: article counts")
    ap.add_argument("--dave", default=str(ROOT / "target" / "release" / "dave"))
    ap.add_argument("--python", action="store_true", help="measure the Python reference beside dave")
    ap.add_argument("--python-bin", default=os.environ.get("PYREF_PYTHON", str(PYREF / ".venv" / "bin" / "python")),
                    help="the Python reference's interpreter (a venv with its requirements)")
    ap.add_argument("--levels", default="10000,100000,1000000")
    ap.add_argument("--depth", type=int, default=1000, help="pages deep for the keyset case (1000)")
    ap.add_argument("--connections", default="32,256,1000")
    ap.add_argument("--conn-level", type=int, default=100000, help="messages in the connections run's data")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1,
                    help="growth and connections: measure every level this many times, levels "
                         "interleaved; each cell is the round with the median p99 (growth) or req/s "
                         "(connections), every round's figures kept")
    ap.add_argument("--only", default="", help="comma list of growth cases")
    ap.add_argument("--no-pgbench", action="store_true")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    a.levels = [int(x) for x in a.levels.split(",") if x]
    a.articles = [int(x) for x in a.articles.split(",") if x]
    a.connections = [int(x) for x in a.connections.split(",") if x]
    a.only = [x for x in a.only.split(",") if x]
    if not Path(a.dave).exists():
        raise SystemExit(f"{a.dave} missing: cargo build --release -p dave")
    if a.python and not Path(a.python_bin).exists():
        raise SystemExit(f"{a.python_bin} missing: python3 -m venv DIR && DIR/bin/pip install -r "
                         f"{PYREF}/requirements.txt, then --python-bin DIR/bin/python")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda n, f: (_ for _ in ()).throw(KeyboardInterrupt()))
    tmp = Path(tempfile.mkdtemp(prefix="dave-b13-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    cluster = None
    try:
        cluster = Cluster(tmp / "pg", 1100)
        report = {"growth": growth, "connections": connections, "knowledge": knowledge}[a.kind](a, tmp, cluster)
        report["meta"]["load_average_end"] = load_average()
        out = Path(a.out or ROOT / "docs" / "bench-results" /
                   f"{time.strftime('%Y-%m-%d-%H%M', time.gmtime())}-{a.kind}.json")
        out.write_text(json.dumps(report, indent=2) + "\n")
        log(f"JSON: {out}")
        return 0
    finally:
        for p in list(CHILDREN):
            try:
                stop(p)
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        if cluster:
            try:
                cluster.stop()
            except SystemExit:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
