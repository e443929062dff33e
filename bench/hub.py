"""bench/hub's driver: nbhub + nbhub-proxy beside JupyterHub + configurable-http-proxy, one after
the other in one run, configured alike, with the ratios printed at the end. Run it through
bench/hub, which installs and builds what it needs and passes the paths in the environment.

Per system, in this order:
  1. start-up on an empty database (launch → GET /hub/api/ answers through the proxy), RSS idle;
  2. GET /hub/api/users/alice with alice's token at BENCH_CONNS connections (wrk): requests/s,
     p50, p99, and the hub's CPU time per request;
  3. spawn storm: BENCH_SPAWNS users start their servers at once through the API; the time until
     all are ready, and each spawn's hub overhead (the server's first answer to the readiness probe
     → the "ready" event, which comes after the proxy route is in);
  4. login storm: BENCH_LOGINS users arrive over BENCH_STORM_SECS, each a browser-like client
     (cookies, redirects, XSRF form field) that logs in, starts its server and opens it through
     the proxy, the server's OAuth login with the hub included; errors counted;
  5. the database grown to BENCH_USERS users and BENCH_RUNNING running servers: hub RSS, and the
     paginated user list (a page of 100 from the middle) under wrk;
  6. the hub stopped (servers left running) and started again: start-up and RSS with those users
     and running servers, and how many servers it still counts as running.
"""

import asyncio
import datetime
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

ENV = os.environ
SECS = int(ENV.get("BENCH_SECS", "10"))
ROUNDS = int(ENV.get("BENCH_ROUNDS", "3"))
CONNS = int(ENV.get("BENCH_CONNS", "50"))
SPAWNS = int(ENV.get("BENCH_SPAWNS", "200"))
LOGINS = int(ENV.get("BENCH_LOGINS", "500"))
STORM_SECS = float(ENV.get("BENCH_STORM_SECS", "60"))
USERS = int(ENV.get("BENCH_USERS", "10000"))
RUNNING = int(ENV.get("BENCH_RUNNING", "1000"))
ONLY = ENV.get("BENCH_ONLY", "")  # "nbhub" or "jupyterhub": one system only (for development)
# A directory with an earlier build's `nbhub` and `nbhub-proxy`: measured too, in the same run,
# and compared with this build in a second table (a change's cost, on the same machine).
BASELINE = ENV.get("BENCH_BASELINE", "")
KEEP = ENV.get("BENCH_KEEP") == "1"  # keep the work directory, the hubs' logs in it
TOKEN = "bench-service-token-0123456789abcdef"
HERE = Path(__file__).resolve().parent
VENV = Path(ENV["NBHUB_VENV"])
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def median(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def percentile(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]


def wrk_ms(text):
    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def wrk(url, token, pid, label):
    """Warm-up, then ROUNDS rounds; medians of requests/s, p50, p99, CPU µs per request."""
    args = ["wrk", "-t2", f"-c{CONNS}", "--latency", "-H", f"Authorization: token {token}", url]
    subprocess.run(args[:3] + ["-d2s"] + args[3:], capture_output=True, check=True)
    rounds = []
    for r in range(ROUNDS):
        cpu0 = cpu_seconds(pid)
        out = subprocess.run(args[:3] + [f"-d{SECS}s"] + args[3:], capture_output=True,
                             text=True, check=True).stdout
        cpu = cpu_seconds(pid) - cpu0
        n = int(re.search(r"(\d+) requests in", out).group(1))
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        res = {
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": wrk_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
            "p99": wrk_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
            "cpu_us": cpu * 1e6 / max(n, 1),
            "errors": int(bad.group(1)) if bad else 0,
        }
        log(f"{label} round {r + 1}: {res['rps']:.0f} req/s, p50 {res['p50']:.2f} ms, "
            f"p99 {res['p99']:.2f} ms, {res['cpu_us']:.0f} µs CPU/request"
            + (f", {res['errors']} non-2xx" if res["errors"] else ""))
        rounds.append(res)
    out = {k: median([r[k] for r in rounds]) for k in ("rps", "p50", "p99", "cpu_us")}
    out["errors"] = sum(r["errors"] for r in rounds)
    return out


class Farm:
    """The tiny servers' farm (hub_farm.py) and the shell command the hubs spawn."""

    def __init__(self, work: Path):
        self.fifo = work / "farm.fifo"
        self.record = work / "farm.record"
        os.mkfifo(self.fifo)
        self.record.touch()
        self.proc = subprocess.Popen([str(VENV / "bin/python"), str(HERE / "hub_farm.py"),
                                      str(self.fifo), str(self.record)], start_new_session=True)
        fields = " ".join(f'"${v}"' for v in (
            "$", "JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_USER", "JUPYTERHUB_CLIENT_ID",
            "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_OAUTH_CALLBACK_URL"))
        script = f"printf '%s %s %s %s %s %s %s\\n' {fields} > '{self.fifo}'; exec sleep infinity"
        self.cmd = ["sh", "-c", script, "farm-server"]

    def first_probes(self):
        """user → the time its server first answered."""
        probes = {}
        for line in self.record.read_text().splitlines():
            user, t = line.split()
            probes.setdefault(user, float(t))
        return probes

    def stop(self):
        pids = Path(f"{self.record}.pids")
        for pid in (pids.read_text().split() if pids.exists() else []):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        self.proc.kill()
        self.proc.wait()


class Hub:
    """One system: its launch command, where it answers, and how to stop it."""

    def __init__(self, name, work: Path, argv, public_port, proxy_api_port):
        self.name, self.work, self.argv = name, work, argv
        self.url = f"http://127.0.0.1:{public_port}"
        self.proxy_api_port = proxy_api_port
        self.proc = None

    def start(self):
        """Launches the hub; returns the seconds until GET /hub/api/ answers 200."""
        t0 = time.time()
        self.proc = subprocess.Popen(self.argv, cwd=self.work, start_new_session=True,
                                     stdout=open(self.work / "hub.log", "ab"),
                                     stderr=subprocess.STDOUT)
        deadline = t0 + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"{self.name} exited: see {self.work / 'hub.log'}")
            try:
                if httpx.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    return time.time() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        sys.exit(f"{self.name} did not answer in 180 s")

    def routed_times(self):
        """user → when the hub's log says its server's route is in the proxy: nbhub's "server
        ready" (after the route and the database write), configurable-http-proxy's "Adding
        route" (CHP logs into JupyterHub's log)."""
        times = {}
        ansi = re.compile(r"\x1b\[[0-9;]*m")
        patterns = (re.compile(r"(\S+Z) +INFO .*server ready user=(\S+)"),
                    re.compile(r"(\S+Z) \[ConfigProxy\] info: Adding route /user/([^/ ]+)"))
        for line in (self.work / "hub.log").read_text(errors="replace").splitlines():
            line = ansi.sub("", line)
            for pattern in patterns:
                m = pattern.match(line)
                if m:
                    when = m.group(1).replace("Z", "+00:00")
                    times[m.group(2)] = datetime.datetime.fromisoformat(when).timestamp()
        return times

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        """SIGTERM, as a site's restart does; user servers are left running."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill_all(self):
        """The hub, and a proxy it left behind (JupyterHub leaves CHP running when signalled)."""
        self.stop()
        subprocess.run(["pkill", "-f", "--", f"--api-port {self.proxy_api_port}"], check=False)
        subprocess.run(["pkill", "-f", "--", f"127.0.0.1:{self.proxy_api_port}"], check=False)


def jupyterhub(work: Path, farm: Farm) -> Hub:
    public, hub, api = free_port(), free_port(), free_port()
    (work / "jupyterhub_config.py").write_text(f"""
c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api}"
c.ConfigurableHTTPProxy.command = [{ENV["NBHUB_CHP"]!r}]
c.JupyterHub.db_url = "sqlite:///{work}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{work}/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{work}/homes/{{username}}"
c.Spawner.cmd = {farm.cmd!r}
c.JupyterHub.concurrent_spawn_limit = {max(SPAWNS, 100)}
c.JupyterHub.cleanup_servers = False
c.JupyterHub.services = [{{"name": "bench", "api_token": "{TOKEN}"}}]
c.JupyterHub.load_roles = [{{"name": "bench", "scopes": ["admin:users", "tokens", "admin:servers"], "services": ["bench"]}}]
# INFO for CHP's "Adding route" lines (the spawn overhead), without a line per request.
c.JupyterHub.log_level = "INFO"
c.JupyterHub.tornado_settings = {{"log_function": lambda handler: None}}
""")
    # The hub finds configurable-http-proxy's node and its own tools on PATH.
    os.environ["PATH"] = f"{VENV}/bin:{ENV['PATH']}"
    argv = [str(VENV / "bin/jupyterhub"), "-f", "jupyterhub_config.py"]
    return Hub("JupyterHub", work, argv, public, api)


def nbhub(work: Path, farm: Farm, bin_dir=None, name="nbhub") -> Hub:
    hub_bin = str(Path(bin_dir) / "nbhub") if bin_dir else ENV["NBHUB_BIN"]
    proxy_bin = str(Path(bin_dir) / "nbhub-proxy") if bin_dir else ENV["NBHUB_PROXY_BIN"]
    public, hub, api = free_port(), free_port(), free_port()
    (work / "data").mkdir()
    (work / "nbhub.toml").write_text(f"""
[hub]
bind_url = "http://127.0.0.1:{public}"
hub_bind_url = "http://127.0.0.1:{hub}"
data_dir = "{work}/data"
log_level = "info"
concurrent_spawn_limit = {max(SPAWNS, 100)}

[authenticator]
kind = "dummy"
allow_all = true

[spawner]
kind = "local"
cmd = {json.dumps(farm.cmd)}
args = []

[local]
switch_user = false

[proxy]
api_url = "http://127.0.0.1:{api}"
command = ["{proxy_bin}"]

[[services]]
name = "bench"
api_token = "{TOKEN}"

[[roles]]
name = "bench"
scopes = ["admin:users", "tokens", "admin:servers"]
services = ["bench"]
""")
    return Hub(name, work, [hub_bin, "--config", str(work / "nbhub.toml")], public, api)


def nbhub_baseline(work: Path, farm: Farm) -> Hub:
    """The same set-up with the binaries of BENCH_BASELINE."""
    return nbhub(work, farm, bin_dir=BASELINE, name="nbhub-baseline")


def admin(method, url, headers=None, **kw):
    headers = {"Authorization": f"token {TOKEN}", **(headers or {})}
    r = httpx.request(method, url, headers=headers, timeout=120, **kw)
    if r.status_code >= 400 and r.status_code != 409:
        sys.exit(f"{method} {url}: {r.status_code} {r.text[:300]}")
    return r


def create_users(hub: Hub, names):
    for i in range(0, len(names), 1000):
        admin("POST", f"{hub.url}/hub/api/users", json={"usernames": names[i:i + 1000]})


async def spawn_storm(hub: Hub, farm: Farm, users):
    """All of `users` start at once; returns (seconds until all ready, overheads in ms, failures).

    aiohttp rather than httpx here: with hundreds of event streams at once, a slower client's
    own lag would be counted as the hub's overhead.
    """
    auth = {"Authorization": f"token {TOKEN}"}
    failures = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(headers=auth, connector=connector, timeout=timeout) as c:
        async def one(user):
            base = f"{hub.url}/hub/api/users/{user}/server"
            async with c.post(base) as r:
                if r.status not in (201, 202):
                    failures.append(f"{user}: start {r.status} {(await r.text())[:120]}")
                    return None
            ready = None
            async with c.get(f"{base}/progress") as resp:
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue
                    event = json.loads(line[5:])
                    if event.get("ready"):
                        ready = time.time()
                        break
                    if event.get("failed"):
                        failures.append(f"{user}: {event.get('message')}")
                        return None
            if ready is None:
                failures.append(f"{user}: progress ended without ready")
                return None
            async with c.get(f"{hub.url}/user/{user}/api") as r:  # through the proxy
                if r.status != 200 or "farm" not in await r.text():
                    failures.append(f"{user}: not reachable through the proxy ({r.status})")
            return ready

        t0 = time.time()
        readies = await asyncio.gather(*(one(u) for u in users))
    probes = farm.first_probes()
    seen = [(t - probes[u]) * 1e3 for u, t in zip(users, readies) if t and u in probes]
    logged = hub.routed_times()
    overheads = [(logged[u] - probes[u]) * 1e3 for u in users if u in logged and u in probes]
    done = [t for t in readies if t]
    return (max(done) - t0 if done else float("nan")), overheads, seen, failures


XSRF = re.compile(r'<input[^>]*name="_xsrf"[^>]*value="([^"]+)"|<input[^>]*value="([^"]+)"[^>]*name="_xsrf"')


async def login_storm(hub: Hub, users):
    """Browser-like clients arrive over STORM_SECS; returns (durations in s, errors)."""
    errors = []

    async def one(i, user):
        await asyncio.sleep(i * STORM_SECS / len(users))
        t0 = time.time()
        async with httpx.AsyncClient(follow_redirects=True, timeout=60) as c:
            try:
                r = await c.get(f"{hub.url}/hub/login")
                m = XSRF.search(r.text)
                form = {"username": user, "password": "bench"}
                if m:
                    form["_xsrf"] = m.group(1) or m.group(2)
                r = await c.post(f"{hub.url}/hub/login", data=form)
                if r.status_code >= 400:
                    errors.append(f"{user}: login {r.status_code}")
                    return None
                r = await c.get(f"{hub.url}/hub/spawn")
                if r.status_code >= 400:
                    errors.append(f"{user}: spawn {r.status_code}")
                    return None
                while time.time() - t0 < 180:
                    r = await c.get(f"{hub.url}/user/{user}/lab")
                    if r.status_code == 200 and r.headers.get("content-type", "").startswith(
                            "application/json") and r.json().get("user") == user:
                        return time.time() - t0
                    if r.status_code >= 500:
                        errors.append(f"{user}: {r.url} {r.status_code}")
                        return None
                    await asyncio.sleep(0.5)
                errors.append(f"{user}: server not open after 180 s (last {r.url} {r.status_code})")
            except httpx.HTTPError as e:
                errors.append(f"{user}: {type(e).__name__} {e}")
        return None

    durations = await asyncio.gather(*(one(i, u) for i, u in enumerate(users)))
    return [d for d in durations if d is not None], errors


def count_running(hub: Hub):
    r = admin("GET", f"{hub.url}/hub/api/users", params={"state": "active", "limit": 1},
              headers={"Accept": "application/jupyterhub-pagination+json"})
    return r.json()["_pagination"]["total"]


def run(system, base: Path):
    work = base / system.__name__
    work.mkdir()
    (work / "homes").mkdir()
    farm = Farm(work)
    hub = system(work, farm)
    res = {}
    try:
        log(f"{hub.name}: start-up, empty database")
        res["start_empty"] = hub.start()
        time.sleep(2)
        res["rss_idle"] = rss_mb(hub.pid)

        log(f"{hub.name}: GET /hub/api/users/alice with alice's token")
        admin("POST", f"{hub.url}/hub/api/users/alice")
        user_token = admin("POST", f"{hub.url}/hub/api/users/alice/tokens",
                           json={"note": "bench"}).json()["token"]
        res["api"] = wrk(f"{hub.url}/hub/api/users/alice", user_token, hub.pid, hub.name)

        spawners = [f"spawn{i:04d}" for i in range(SPAWNS)]
        create_users(hub, spawners)
        log(f"{hub.name}: {SPAWNS} spawns at once")
        all_ready, overheads, seen, failures = asyncio.run(spawn_storm(hub, farm, spawners))
        res["spawn"] = {"all_ready_s": all_ready, "overhead_p50": percentile(overheads, 0.5),
                        "overhead_p99": percentile(overheads, 0.99),
                        "seen_p50": percentile(seen, 0.5), "seen_p99": percentile(seen, 0.99),
                        "failures": len(failures)}
        for f in failures[:5]:
            log(f"{hub.name} spawn failure: {f}")
        log(f"{hub.name}: {len(overheads)} ready in {all_ready:.2f} s; overhead p50 "
            f"{res['spawn']['overhead_p50']:.1f} ms, p99 {res['spawn']['overhead_p99']:.1f} ms "
            f"(the client saw ready after p50 {res['spawn']['seen_p50']:.1f} ms, "
            f"p99 {res['spawn']['seen_p99']:.1f} ms)")

        log(f"{hub.name}: login storm, {LOGINS} users over {STORM_SECS:.0f} s")
        durations, errors = asyncio.run(login_storm(hub, [f"login{i:04d}" for i in range(LOGINS)]))
        res["storm"] = {"ok": len(durations), "errors": len(errors),
                        "p50": percentile(durations, 0.5), "p99": percentile(durations, 0.99)}
        for e in errors[:5]:
            log(f"{hub.name} login storm error: {e}")
        log(f"{hub.name}: {len(durations)} opened their server, {len(errors)} errors; "
            f"p50 {res['storm']['p50']:.2f} s, p99 {res['storm']['p99']:.2f} s")

        more = max(0, RUNNING - SPAWNS - len(durations))
        log(f"{hub.name}: growing to {USERS} users and {RUNNING} running servers")
        extra = [f"run{i:04d}" for i in range(more)]
        create_users(hub, extra + [f"u{i:05d}" for i in range(max(0, USERS - 1 - SPAWNS - LOGINS - more))])
        for i in range(0, len(extra), 100):
            asyncio.run(spawn_storm(hub, farm, extra[i:i + 100]))
        res["running_before"] = count_running(hub)
        time.sleep(2)
        res["rss_scaled"] = rss_mb(hub.pid)

        log(f"{hub.name}: the paginated user list (offset {USERS // 2}, limit 100)")
        res["list"] = wrk(f"{hub.url}/hub/api/users?offset={USERS // 2}&limit=100", TOKEN,
                          hub.pid, f"{hub.name} list")

        log(f"{hub.name}: restart with {USERS} users and {res['running_before']} running servers")
        hub.stop()
        res["start_scaled"] = hub.start()
        time.sleep(5)
        res["rss_restarted"] = rss_mb(hub.pid)
        res["running_after"] = count_running(hub)
    finally:
        hub.kill_all()
        farm.stop()
    return res


def fmt(v, digits=1):
    if isinstance(v, int):
        return str(v)
    return "-" if v != v else f"{v:.{digits}f}"


def ratio(a, b):
    return "-" if not b or a != a or b != b else f"{a / b:.1f}×"


def report(jh, nb, jh_version, heads=None):
    rows = [  # label, key path, digits, True if higher is better
        ("start → API answers, empty (s)", ("start_empty",), 3, False),
        (f"start → API answers, {USERS} users / {RUNNING} running (s)", ("start_scaled",), 3, False),
        ("hub RSS idle (MB)", ("rss_idle",), 1, False),
        (f"hub RSS, {USERS} users / {RUNNING} running (MB)", ("rss_scaled",), 1, False),
        ("hub RSS after the restart (MB)", ("rss_restarted",), 1, False),
        ("GET /users/alice: requests/s", ("api", "rps"), 0, True),
        ("GET /users/alice: p50 (ms)", ("api", "p50"), 2, False),
        ("GET /users/alice: p99 (ms)", ("api", "p99"), 2, False),
        ("GET /users/alice: hub CPU per request (µs)", ("api", "cpu_us"), 0, False),
        ("user list page: requests/s", ("list", "rps"), 0, True),
        ("user list page: p99 (ms)", ("list", "p99"), 2, False),
        ("user list page: hub CPU per request (µs)", ("list", "cpu_us"), 0, False),
        (f"{SPAWNS} spawns at once: all ready (s)", ("spawn", "all_ready_s"), 2, False),
        ("spawn hub overhead p50 (ms; hub's log)", ("spawn", "overhead_p50"), 1, False),
        ("spawn hub overhead p99 (ms; hub's log)", ("spawn", "overhead_p99"), 1, False),
        ("probe answered → client sees ready, p99 (ms)", ("spawn", "seen_p99"), 1, False),
        ("spawn failures", ("spawn", "failures"), 0, None),
        (f"login storm ({LOGINS} in {STORM_SECS:.0f} s): opened", ("storm", "ok"), 0, None),
        ("login storm: errors", ("storm", "errors"), 0, None),
        ("login storm: login → server open p50 (s)", ("storm", "p50"), 2, False),
        ("login storm: login → server open p99 (s)", ("storm", "p99"), 2, False),
        ("servers running after the restart", ("running_after",), 0, None),
    ]

    def get(res, path):
        for k in path:
            res = res.get(k, float("nan")) if isinstance(res, dict) else float("nan")
        return res

    a_head, b_head = heads or (f"JupyterHub {jh_version} + CHP", "nbhub + nbhub-proxy")
    lines = [f"| | {a_head} | {b_head} | ratio |", "|---|---|---|---|"]
    ratios = []
    for label, path, digits, higher in rows:
        a, b = get(jh, path), get(nb, path)
        r = "" if higher is None else ratio(b, a) if higher else ratio(a, b)
        if r and r != "-":
            ratios.append((label, float(r[:-1])))
        lines.append(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {r} |")
    return "\n".join(lines), ratios


def svg_plot(ratios, path: Path):
    """A bar per figure: how many times better nbhub is, on a log scale, 1× and 20× marked."""
    width, left, bar, gap = 900, 380, 18, 8
    height = 40 + len(ratios) * (bar + gap) + 30
    top = max(100.0, max(r for _, r in ratios))
    x = lambda v: left + (width - left - 70) * math.log10(max(v, 0.1) * 10) / math.log10(top * 10)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18" font-weight="bold">nbhub vs JupyterHub + CHP: times better '
           f'(log scale)</text>']
    for mark in (1, 10, 20, 100):
        if mark <= top:
            out.append(f'<line x1="{x(mark):.1f}" y1="28" x2="{x(mark):.1f}" y2="{height - 24}" '
                       f'stroke="{"#c00" if mark == 20 else "#999"}" stroke-dasharray="3,3"/>')
            out.append(f'<text x="{x(mark):.1f}" y="{height - 8}" text-anchor="middle">{mark}×</text>')
    for i, (label, r) in enumerate(ratios):
        y = 36 + i * (bar + gap)
        out.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{x(0.1):.1f}" y="{y}" width="{x(r) - x(0.1):.1f}" height="{bar}" '
                   f'fill="{"#2a7" if r >= 1 else "#c33"}"/>')
        out.append(f'<text x="{x(r) + 4:.1f}" y="{y + 13}">{r:.1f}×</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def main():
    base = Path(tempfile.mkdtemp(prefix="nbhub-bench-hub."))
    jh_version = subprocess.run([str(VENV / "bin/python"), "-c",
                                 "import jupyterhub; print(jupyterhub.__version__)"],
                                capture_output=True, text=True, check=True).stdout.strip()
    results = {}
    try:
        if ONLY != "nbhub":
            results["jupyterhub"] = run(jupyterhub, base)
        if BASELINE:
            results["baseline"] = run(nbhub_baseline, base)
        if ONLY != "jupyterhub":
            results["nbhub"] = run(nbhub, base)
    finally:
        if KEEP:
            log(f"kept {base}")
        else:
            subprocess.run(["rm", "-rf", str(base)], check=False)
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "?")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1048576
    table, ratios = report(results.get("jupyterhub", {}), results.get("nbhub", {}), jh_version)
    print(f"\n{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB; {ROUNDS} rounds of {SECS} s at "
          f"{CONNS} connections (medians); concurrent_spawn_limit {max(SPAWNS, 100)} on both\n")
    print(table)
    if BASELINE:
        base_table, _ = report(results.get("baseline", {}), results.get("nbhub", {}), jh_version,
                               heads=(f"baseline ({BASELINE})", "this build"))
        print(f"\nThis build against the baseline (ratio > 1: this build is better)\n")
        print(base_table)
    if ENV.get("BENCH_JSON"):
        Path(ENV["BENCH_JSON"]).write_text(json.dumps(results, indent=1))
    if ENV.get("BENCH_PLOT") and ratios:
        svg_plot(ratios, Path(ENV["BENCH_PLOT"]))
        log(f"plot written to {ENV['BENCH_PLOT']}")


if __name__ == "__main__":
    main()
