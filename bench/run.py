#!/usr/bin/env python3
"""commander's load benchmark: the gateway side by side with a direct call to the same upstream.

One command (from the repository root):

    bench/run.py                     # full run: 20 s per measurement, SQLite and PostgreSQL
    bench/run.py --smoke             # a few seconds: checks that it runs and no row is lost
    bench/run.py --crash             # ~20 s: SIGKILL at full load, restart, 0 answered calls
                                     # without a row
    bench/run.py --rate-limit-store redis   # the same with the rate limits in Redis (shared)
    bench/run.py --budgets none|two         # callers authenticated by an API key, with no budget
                                            # or with a global and a per-user one (A/B the cost
                                            # of admission with budgets)

It builds release binaries, starts the fast fake OpenAI-compatible upstream (bins/fake-upstream)
and commander in front of it (a specialist on the `openai` provider whose configured base_url is
the fake, a rate limit too high to matter), and drives both with oha (installed with
`cargo install oha` when missing):

  * direct to the fake upstream, and through /chat/send, /v1/chat/completions (whole and
    streamed) and /chat/stream, at 1, 8 and 64 connections, after a warm-up;
  * at a fixed 2,000 requests/s, direct and through /v1/chat/completions, for the latency the
    gateway adds where nothing is saturated;
  * commander's resident memory idle, at the end of the load, and with 1,000 open streams.

After every gateway run it checks that the usage rows written equal the requests answered.

`--crash` is the crash test instead: Python clients (oha cannot tell which requests were
answered) load /v1/chat/completions, whole and streamed, noting the X-Request-Id of every whole
answer; commander is killed with SIGKILL at full load and restarted on the same journal, and
every answered id must have its row (calls cut by the kill have `interrupted` rows). It prints
`answered N, rows for all of them: yes/no, interrupted: M` per backend and exits 1 on a miss.
The table is printed and written to target/bench/results-<backend>.md. Only the Python standard
library is needed (and psql for the PostgreSQL run).
"""
import argparse
import asyncio
import hashlib
import http.client
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from common import RELEASE, ROOT, free_port, hold_streams, rss_mib, start, wait_for_port

OUT_DIR = os.path.join(ROOT, "target", "bench")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PG_SERVER = os.environ.get("COMMANDER_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")

CHAT = {"specialist_id": "bench", "message": "How did the quarter go?"}
V1 = {"model": "bench", "messages": [{"role": "user", "content": "How did the quarter go?"}]}
V1_STREAM = dict(V1, stream=True, stream_options={"include_usage": True})
DIRECT = {"model": "gpt-4o-mini", "max_tokens": 64, "temperature": 0.2,
          "messages": [{"role": "system", "content": "Answer."},
                       {"role": "user", "content": "How did the quarter go?"}]}
DIRECT_STREAM = dict(DIRECT, stream=True, stream_options={"include_usage": True})

# With --budgets, the gateway requires this API key (its owner is BENCH_EMAIL).
BENCH_KEY = "commander-bench-key-0123456789"
BENCH_EMAIL = "bench@example.com"
# The headers every request to the gateway carries (set by main for --budgets).
GATEWAY_HEADERS = []


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def ensure_oha():
    if shutil.which("oha"):
        return "oha"
    cargo_bin = os.path.expanduser("~/.cargo/bin/oha")
    if os.path.exists(cargo_bin):
        return cargo_bin
    log("oha not found: installing it from crates.io (cargo install oha --locked)")
    subprocess.run(["cargo", "install", "oha", "--locked"], check=True)
    return cargo_bin


def oha(binary, url, body, duration, connections, rate=None, headers=()):
    args = [binary, "--no-tui", "--output-format", "json", "-z", f"{duration}s",
            "-c", str(connections), "-w", "-m", "POST", "-T", "application/json",
            "-d", json.dumps(body), url]
    for header in headers:
        args += ["-H", header]
    if rate:
        args += ["-q", str(rate), "--latency-correction"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    codes = result.get("statusCodeDistribution", {})
    return {
        "rps": result["summary"]["requestsPerSec"],
        "p50": result["latencyPercentiles"]["p50"] * 1000,
        "p99": result["latencyPercentiles"]["p99"] * 1000,
        "ok": int(codes.get("200", 0)),
        "failed": sum(int(v) for k, v in codes.items() if k != "200")
        + sum(result.get("errorDistribution", {}).values()),
    }


class Database:
    """The usage database of one run, and its row count."""

    def __init__(self, backend, work):
        self.backend = backend
        if backend == "sqlite":
            self.path = os.path.join(work, "usage.db")
            self.url = f"sqlite://{self.path}"
        else:
            self.name = f"commander_bench_{os.getpid()}"
            subprocess.run(["psql", f"{PG_SERVER}/postgres", "-qc", f"CREATE DATABASE {self.name}"],
                           check=True)
            self.url = f"{PG_SERVER}/{self.name}"

    def rows(self):
        if self.backend == "sqlite":
            if not os.path.exists(self.path):
                return 0
            with sqlite3.connect(self.path) as db:
                try:
                    return db.execute("SELECT count(*) FROM usage_logs").fetchone()[0]
                except sqlite3.OperationalError:
                    return 0
        out = subprocess.run(["psql", self.url, "-Atc", "SELECT count(*) FROM usage_logs"],
                             capture_output=True, text=True)
        return int(out.stdout.strip() or 0)

    def query(self, sql):
        """The rows of `sql` as tuples of strings (NULL as the empty string)."""
        if self.backend == "sqlite":
            with sqlite3.connect(self.path) as db:
                return [tuple("" if v is None else str(v) for v in row)
                        for row in db.execute(sql).fetchall()]
        out = subprocess.run(["psql", self.url, "-AtF", "\t", "-c", sql],
                             capture_output=True, text=True, check=True)
        return [tuple(line.split("\t")) for line in out.stdout.splitlines() if line]

    def settled_rows(self, expected=None, timeout=60.0):
        """The row count once the writer has caught up (it reaches `expected`, or stops moving)."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            count = self.rows()
            if expected is not None and count >= expected:
                return count
            if expected is None and count == last:
                return count
            last = count
            time.sleep(0.5)
        return self.rows()

    def drop(self):
        if self.backend == "postgres":
            subprocess.run(["psql", f"{PG_SERVER}/postgres", "-qc",
                            f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"], check=False)


def stream_request(port, body):
    """The raw bytes of a `/chat/stream` request with `body`."""
    payload = json.dumps(body).encode()
    extra = "".join(f"{h}\r\n" for h in GATEWAY_HEADERS)
    return (f"POST /chat/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload


def write_config(work, db, gateway, fast, slow, log_level, redis_url=None, budgets="off"):
    """commander's configuration for a run in `work`: OpenAI at the fake on port `fast`, the
    `openai_compatible` one on `slow`, rate limits in Redis at `redis_url` when given (with a
    key prefix of this run's own), and with `budgets` other than "off" the bench API key
    required and ("two") a global and a per-user budget too large to refuse anything; returns
    its path."""
    shared = "" if redis_url is None else (
        f'store = "redis"\n[redis]\nurl = "{redis_url}"\n'
        f'key_prefix = "commander:bench:{os.getpid()}:{gateway}"\n')
    if budgets != "off":
        digest = hashlib.sha256(BENCH_KEY.encode()).hexdigest()
        shared += (f'[auth]\nmode = "required"\napi_keys = [{{ name = "bench", '
                   f'email = "{BENCH_EMAIL}", role = "user", sha256 = "{digest}" }}]\n')
    if budgets == "two":
        shared += ('[[budgets.limits]]\nid = "all"\nscope = "global"\nperiod = "month"\n'
                   'limit_usd = 9000000\n'
                   f'[[budgets.limits]]\nid = "bench-user"\nscope = "user"\nsubject = "{BENCH_EMAIL}"\n'
                   'period = "day"\nlimit_usd = 9000000\n')
    config = os.path.join(work, "commander.toml")
    with open(config, "w") as f:
        f.write(f"""
[server]
bind = "127.0.0.1:{gateway}"
max_connections_per_client = 100000
[database]
url = "{db.url}"
spill_path = "{work}/spill.jsonl"
[specialists]
path = "{os.path.join(work, "specialists.json")}"
[providers]
allowed_http_base_urls = ["http://127.0.0.1:{slow}/v1"]
openai_compatible = [{{ base_url = "http://127.0.0.1:{slow}/v1", api_key = "bench" }}]
[providers.openai]
api_key = "bench-key"
base_url = "http://127.0.0.1:{fast}/v1"
[log]
level = "{log_level}"
[rate_limit]
requests = 1000000000
window_seconds = 1
{shared}""")
    return config


def redis_of(args):
    """The Redis URL when the run measures the shared rate-limit store, else None."""
    return args.redis_url if args.rate_limit_store == "redis" else None


def fmt(value, digits=3):
    return "—" if value is None else f"{value:.{digits}f}"


def run_backend(backend, args, oha_bin):
    work = tempfile.mkdtemp(prefix=f"commander-bench-{backend}-")
    fast, slow, gateway = free_port(), free_port(), free_port()
    procs = []
    db = Database(backend, work)
    rows_table, notes = [], []
    try:
        procs.append(start([os.path.join(RELEASE, "fake-upstream"), "--bind", f"127.0.0.1:{fast}",
                            "--chunks", "8", "--workers", "1"]))
        procs.append(start([os.path.join(RELEASE, "fake-upstream"), "--bind", f"127.0.0.1:{slow}",
                            "--chunks", "2", "--chunk-delay-ms", "3600000", "--workers", "1"]))
        specialists = os.path.join(work, "specialists.json")
        with open(specialists, "w") as f:
            json.dump({"specialists": [
                {"id": "bench", "name": "Bench", "provider": "openai", "model": "gpt-4o-mini",
                 "system_prompt": "Answer.", "temperature": 0.2, "max_tokens": 64},
                {"id": "slow", "name": "Slow", "provider": "openai", "model": "gpt-4o-mini",
                 "base_url": f"http://127.0.0.1:{slow}/v1", "system_prompt": "Answer."},
            ]}, f)
        config = write_config(work, db, gateway, fast, slow, args.log_level, redis_of(args),
                              args.budgets)
        commander = start([os.path.join(RELEASE, "commander"), "--config", config], cwd=work)
        procs.append(commander)
        for port in (fast, slow, gateway):
            wait_for_port(port)
        time.sleep(0.5)
        idle_rss = rss_mib(commander.pid)

        direct_url = f"http://127.0.0.1:{fast}/v1/chat/completions"
        gw = f"http://127.0.0.1:{gateway}"
        scenarios = [
            ("direct (fake upstream)", direct_url, DIRECT, None),
            ("/chat/send", f"{gw}/chat/send", CHAT, "direct (fake upstream)"),
            ("/v1/chat/completions", f"{gw}/v1/chat/completions", V1, "direct (fake upstream)"),
            ("direct stream", direct_url, DIRECT_STREAM, None),
            ("/v1/chat/completions stream", f"{gw}/v1/chat/completions", V1_STREAM, "direct stream"),
            ("/chat/stream", f"{gw}/chat/stream", CHAT, "direct stream"),
        ]
        baselines = {}
        total_answered = 0
        for connections in args.connections:
            for name, url, body, baseline in scenarios:
                headers = GATEWAY_HEADERS if baseline else ()
                if args.warmup:
                    oha(oha_bin, url, body, args.warmup, connections, headers=headers)
                before = db.settled_rows() if baseline else None
                cpu_before = cpu_seconds(commander.pid)
                result = oha(oha_bin, url, body, args.duration, connections, headers=headers)
                cpu = cpu_seconds(commander.pid) - cpu_before
                row = {"scenario": name, "c": connections, **result, "added50": None,
                       "added99": None, "ratio": None, "cpu": None, "rows": "—"}
                if baseline is None:
                    baselines[(name, connections)] = result
                else:
                    base = baselines[(baseline, connections)]
                    row["added50"] = result["p50"] - base["p50"]
                    row["added99"] = result["p99"] - base["p99"]
                    row["ratio"] = result["rps"] / base["rps"]
                    handled = result["ok"] + result["failed"]
                    row["cpu"] = cpu / handled * 1000 * 1000 if handled else None
                    after = db.settled_rows(before + result["ok"])
                    lost = result["ok"] - (after - before)
                    total_answered += result["ok"]
                    row["rows"] = "0 lost" if lost == 0 else f"{lost} LOST" if lost > 0 else f"{-lost} extra"
                    if lost != 0:
                        notes.append(f"{name} c={connections}: {result['ok']} answered, "
                                     f"{after - before} rows")
                if result["failed"]:
                    notes.append(f"{name} c={connections}: {result['failed']} failed requests")
                rows_table.append(row)
                log(f"{backend} {name} c={connections}: {result['rps']:.0f} req/s "
                    f"p50 {result['p50']:.3f} ms p99 {result['p99']:.3f} ms {row['rows']}")
        load_rss = rss_mib(commander.pid)

        rate_rows = []
        if args.rate:
            direct = oha(oha_bin, direct_url, DIRECT, args.duration, 16, rate=args.rate)
            before = db.settled_rows()
            through = oha(oha_bin, f"{gw}/v1/chat/completions", V1, args.duration, 16, rate=args.rate,
                          headers=GATEWAY_HEADERS)
            after = db.settled_rows(before + through["ok"])
            lost = through["ok"] - (after - before)
            rate_rows = [(direct, through, lost)]
            log(f"{backend} fixed {args.rate}/s: added p50 {through['p50'] - direct['p50']:.3f} ms, "
                f"p99 {through['p99'] - direct['p99']:.3f} ms, rows lost {lost}")

        before = db.settled_rows()
        writers = asyncio.run(_hold(gateway, args.streams))
        streams_rss = rss_mib(commander.pid)
        # Closing them is 1,000 clients leaving mid-stream: each must still get its row.
        after = db.settled_rows(before + args.streams)
        stream_rows_lost = args.streams - (after - before)
        del writers

        return {
            "backend": backend, "rows": rows_table, "rate": rate_rows, "idle_rss": idle_rss,
            "load_rss": load_rss, "streams_rss": streams_rss, "streams": args.streams,
            "stream_rows_lost": stream_rows_lost, "notes": notes, "answered": total_answered,
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        db.drop()
        shutil.rmtree(work, ignore_errors=True)


async def _hold(port, count):
    writers = await hold_streams(
        port, stream_request(port, {"specialist_id": "slow", "message": "wait"}), count)
    await asyncio.sleep(1.0)
    for w in writers:
        w.close()
    return len(writers)


class CrashLoad:
    """Clients that call /v1/chat/completions (whole and streamed, alternately) as fast as
    commander answers, each on its own keep-alive connection, noting the X-Request-Id of every
    answer that arrived whole (a stream: through `[DONE]`)."""

    def __init__(self, port, clients):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answered, self.cut, self.refused = [], 0, 0
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                        for i in range(clients)]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        for t in self.threads:
            t.join(timeout=60)

    def _client(self, index):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        n = 0
        while not self.stop.is_set():
            streamed = (index + n) % 2 == 1
            n += 1
            body = json.dumps(V1_STREAM if streamed else V1)
            try:
                conn.request("POST", "/v1/chat/completions", body=body,
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                request_id = response.getheader("X-Request-Id")
                data = response.read()
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.cut += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                continue
            whole = response.status == 200 and (not streamed or b"data: [DONE]" in data)
            with self.lock:
                if whole:
                    self.answered.append(request_id)
                else:
                    self.refused += 1
        conn.close()


def run_crash(backend, args):
    """SIGKILL at full load, restart, and check that every answered call has its row."""
    work = tempfile.mkdtemp(prefix=f"commander-crash-{backend}-")
    fast, slow, gateway = free_port(), free_port(), free_port()
    procs = []
    db = Database(backend, work)
    try:
        # Streams take a few milliseconds, so some are mid-answer when the kill lands.
        procs.append(start([os.path.join(RELEASE, "fake-upstream"), "--bind", f"127.0.0.1:{fast}",
                            "--chunks", "8", "--chunk-delay-ms", "2", "--workers", "1"]))
        with open(os.path.join(work, "specialists.json"), "w") as f:
            json.dump({"specialists": [
                {"id": "bench", "name": "Bench", "provider": "openai", "model": "gpt-4o-mini",
                 "system_prompt": "Answer.", "temperature": 0.2, "max_tokens": 64},
            ]}, f)
        config = write_config(work, db, gateway, fast, slow, args.log_level, redis_of(args))
        command = [os.path.join(RELEASE, "commander"), "--config", config]
        commander = start(command, cwd=work)
        procs.append(commander)
        wait_for_port(fast)
        wait_for_port(gateway)

        load = CrashLoad(gateway, args.crash_clients)
        load.start()
        time.sleep(args.crash_after)
        with load.lock:
            at_kill = len(load.answered)
        load.stop.set()
        commander.kill()
        commander.wait()
        load.join()
        log(f"{backend}: SIGKILL after {args.crash_after} s of load, {at_kill} answers in; "
            f"{len(load.answered)} answered, {load.cut} cut, {load.refused} refused")

        commander = start(command, cwd=work)
        procs.append(commander)
        wait_for_port(gateway)
        gw = f"http://127.0.0.1:{gateway}"
        deadline = time.monotonic() + 60
        while not _status(f"{gw}/ready") == 200:
            if time.monotonic() > deadline:
                sys.exit(f"{backend}: commander not ready 60 s after the restart")
            time.sleep(0.1)
        # The writer applies the journal in order: once a call made now has its row, every row
        # the killed process left is in too.
        barrier = _post(f"{gw}/chat/send", CHAT, {"X-Request-Id": "crash-barrier"})
        if barrier != 200:
            sys.exit(f"{backend}: the call after the restart got {barrier}")
        while not db.query("SELECT 1 FROM usage_logs WHERE client_request_id = 'crash-barrier'"):
            if time.monotonic() > deadline:
                sys.exit(f"{backend}: the call after the restart never reached the database")
            time.sleep(0.1)

        rows = dict(db.query("SELECT request_id, error_code FROM usage_logs "
                             "WHERE client_request_id IS NULL OR client_request_id <> 'crash-barrier'"))
        answered = set(load.answered)
        missing = [i for i in answered if i not in rows]
        not_success = [i for i in answered if i in rows and rows[i]]
        interrupted = sum(1 for code in rows.values() if code == "interrupted")
        other = sorted({code for code in rows.values() if code not in ("", "interrupted")})
        return {"backend": backend, "answered": len(answered), "missing": missing,
                "not_success": not_success, "interrupted": interrupted, "rows": len(rows),
                "other_codes": other}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        db.drop()
        shutil.rmtree(work, ignore_errors=True)


def _status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def _post(url, body, headers):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def crash_main(args):
    failed = False
    for backend in args.backends.split(","):
        r = run_crash(backend, args)
        complete = not r["missing"] and not r["not_success"]
        print(f"{backend}: answered {r['answered']}, rows for all of them: "
              f"{'yes' if complete else 'no'}, interrupted: {r['interrupted']} "
              f"(rows {r['rows']})")
        if r["missing"]:
            print(f"  {len(r['missing'])} answered without a row, e.g. {r['missing'][:5]}")
        if r["not_success"]:
            print(f"  {len(r['not_success'])} answered with a failed row, e.g. {r['not_success'][:5]}")
        if r["other_codes"]:
            print(f"  rows failed otherwise than interrupted: {r['other_codes']}")
        failed |= not complete or bool(r["other_codes"])
    sys.exit(1 if failed else 0)


def render(result, args):
    lines = [f"### {result['backend']}", "",
             "| scenario | conns | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | "
             "ratio to direct | CPU ms / 1k req | usage rows |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['scenario']} | {r['c']} | {r['rps']:.0f} | {fmt(r['p50'])} | "
                     f"{fmt(r['p99'])} | {fmt(r['added50'])} | {fmt(r['added99'])} | "
                     f"{fmt(r['ratio'], 2)} | {fmt(r['cpu'], 1)} | {r['rows']} |")
    for direct, through, lost in result["rate"]:
        lines += ["", f"At a fixed {args.rate} requests/s (16 connections, latency-corrected): "
                  f"direct p50 {direct['p50']:.3f} ms / p99 {direct['p99']:.3f} ms; through "
                  f"/v1/chat/completions p50 {through['p50']:.3f} ms / p99 {through['p99']:.3f} ms; "
                  f"**added p50 {through['p50'] - direct['p50']:.3f} ms, p99 "
                  f"{through['p99'] - direct['p99']:.3f} ms**; usage rows lost: {lost}."]
    lines += ["", f"Resident memory: idle {result['idle_rss']:.1f} MiB, at the end of the load "
              f"{result['load_rss']:.1f} MiB, with {result['streams']} open streams "
              f"{result['streams_rss']:.1f} MiB (rows for the {result['streams']} abandoned "
              f"streams lost: {result['stream_rows_lost']})."]
    for note in result["notes"]:
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=20, help="seconds per measurement")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of warm-up before each")
    ap.add_argument("--connections", default="1,8,64")
    ap.add_argument("--rate", type=int, default=2000, help="fixed-rate run, requests/s (0: skip)")
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--log-level", default="info", help="commander's log level during the load")
    ap.add_argument("--rate-limit-store", choices=["local", "redis"], default="local",
                    help="where the rate-limit buckets live (redis: shared, one EVALSHA a call)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    ap.add_argument("--budgets", choices=["off", "none", "two"], default="off",
                    help="none: callers authenticated by an API key, no budget; two: the same "
                         "with a global and a per-user budget (never reached)")
    ap.add_argument("--smoke", action="store_true", help="a few seconds, to check it runs")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--crash", action="store_true",
                    help="the crash test instead: SIGKILL at full load, restart, and check that "
                         "every answered call has its usage row")
    ap.add_argument("--crash-after", type=float, default=6.0,
                    help="--crash: seconds of load before the kill")
    ap.add_argument("--crash-clients", type=int, default=32,
                    help="--crash: concurrent clients")
    args = ap.parse_args()
    if args.smoke:
        args.duration, args.warmup, args.connections = 2, 0, "8"
        args.rate, args.streams = 500, 50
    args.connections = [int(c) for c in args.connections.split(",")]
    if args.budgets != "off":
        GATEWAY_HEADERS.append(f"Authorization: Bearer {BENCH_KEY}")

    if not args.skip_build:
        subprocess.run(["cargo", "build", "--release", "-p", "commander", "-p", "fake-upstream"],
                       cwd=ROOT, check=True)
    if args.crash:
        crash_main(args)
    oha_bin = ensure_oha()
    os.makedirs(OUT_DIR, exist_ok=True)
    machine = (f"{os.cpu_count()} cores, "
               f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; "
               f"load generator, fake upstream and commander on the same machine")
    failed = False
    for backend in args.backends.split(","):
        result = run_backend(backend, args, oha_bin)
        text = (f"# commander benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
                f"Machine: {machine}. {args.duration} s per measurement after {args.warmup} s of "
                f"warm-up. Rate-limit store: {args.rate_limit_store}. Budgets: {args.budgets}.\n\n"
                + render(result, args))
        print(text)
        suffix = "" if args.rate_limit_store == "local" else f"-{args.rate_limit_store}"
        suffix += "" if args.budgets == "off" else f"-budgets-{args.budgets}"
        with open(os.path.join(OUT_DIR, f"results-{backend}{suffix}.md"), "w") as f:
            f.write(text)
        lost = [r for r in result["rows"] if "LOST" in r["rows"]]
        if lost or result["stream_rows_lost"] or any(l for _, _, l in result["rate"]):
            failed = True
            print(f"USAGE ROWS LOST on {backend}")
        else:
            print(f"{backend}: usage rows written = requests answered ({result['answered']} "
                  f"under load, plus every abandoned stream): 0 lost")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
