#!/usr/bin/env python3
"""What commander adds to a stream's time to first byte, and what 1,000 open streams cost it.

Starts the release `fake-upstream` (OpenAI-compatible) and `commander` pointed at it, then:
  1. time to first byte, sequentially, one fresh connection per request: direct to the fake
     upstream's streaming chat completion, and through commander's POST /chat/stream;
     prints p50/p99 of each and the difference (what the gateway adds);
  2. resident memory of commander idle, then with N concurrent streams held open (the upstream
     sends its first chunk, then waits), read from /proc/PID/status.

Usage: bench/streams.py [--requests 2000] [--streams 1000]   (after `cargo build --release`)
Only the Python standard library is needed.
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

from common import RELEASE, free_port, hold_streams, rss_mib, start, wait_for_port


def request_bytes(port, path, body):
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + payload


async def first_body_byte(port, raw):
    """Seconds from connect to the first byte of the response body."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit(f"unexpected response: {head[:200]!r}")
    await reader.read(1)
    elapsed = time.perf_counter() - start
    writer.close()
    return elapsed


async def ttfb_series(port, raw, count, warmup):
    for _ in range(warmup):
        await first_body_byte(port, raw)
    samples = []
    for _ in range(count):
        samples.append(await first_body_byte(port, raw))
    samples.sort()
    return samples


def pct(samples, p):
    return samples[min(len(samples) - 1, int(len(samples) * p))] * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--streams", type=int, default=1000)
    args = ap.parse_args()
    for binary in ("commander", "fake-upstream"):
        if not os.path.exists(os.path.join(RELEASE, binary)):
            sys.exit(f"build first: cargo build --release -p commander -p fake-upstream ({binary} missing)")

    work = tempfile.mkdtemp(prefix="commander-bench-")
    fast_port, slow_port, gw_port, slow_gw_port = (free_port() for _ in range(4))
    procs = []
    try:
        # A fast upstream for latency, and a slow one (first chunk, then an hour's wait) for
        # holding streams open.
        procs.append(start([os.path.join(RELEASE, "fake-upstream"), "--bind", f"127.0.0.1:{fast_port}", "--chunks", "8"]))
        procs.append(start([os.path.join(RELEASE, "fake-upstream"), "--bind", f"127.0.0.1:{slow_port}",
                            "--chunks", "2", "--chunk-delay-ms", "3600000"]))
        specialists = os.path.join(work, "specialists.json")
        with open(specialists, "w") as f:
            json.dump({"specialists": [{
                "id": "bench", "name": "Bench", "provider": "openai", "model": "gpt-4o-mini",
                "system_prompt": "Answer.", "max_tokens": 64}]}, f)
        gateways = []
        for port, upstream in ((gw_port, fast_port), (slow_gw_port, slow_port)):
            config = os.path.join(work, f"commander-{port}.toml")
            with open(config, "w") as f:
                f.write(f"""
[server]
bind = "127.0.0.1:{port}"
workers = 1
max_connections_per_client = 100000
[database]
url = "sqlite://{work}/usage-{port}.db"
[specialists]
path = "{specialists}"
[providers.openai]
api_key = "bench-key"
base_url = "http://127.0.0.1:{upstream}/v1"
[rate_limit]
requests = 100000000
window_seconds = 1
[log]
level = "warn"
""")
            gateways.append(start([os.path.join(RELEASE, "commander"), "--config", config], cwd=work))
        procs.extend(gateways)
        for port in (fast_port, slow_port, gw_port, slow_gw_port):
            wait_for_port(port)

        chat = {"specialist_id": "bench", "message": "Hello there"}
        upstream_body = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
                         "messages": [{"role": "system", "content": "Answer."}, {"role": "user", "content": "Hello there"}],
                         "max_tokens": 64, "temperature": 0.7}
        direct = asyncio.run(ttfb_series(fast_port, request_bytes(fast_port, "/v1/chat/completions", upstream_body),
                                         args.requests, args.warmup))
        through = asyncio.run(ttfb_series(gw_port, request_bytes(gw_port, "/chat/stream", chat),
                                          args.requests, args.warmup))
        print(f"time to first byte over {args.requests} sequential streams (fresh connection each):")
        print(f"  direct to fake upstream   p50 {pct(direct, .5):7.3f} ms   p99 {pct(direct, .99):7.3f} ms")
        print(f"  through /chat/stream      p50 {pct(through, .5):7.3f} ms   p99 {pct(through, .99):7.3f} ms")
        print(f"  added by the gateway      p50 {pct(through, .5) - pct(direct, .5):7.3f} ms   "
              f"p99 {pct(through, .99) - pct(direct, .99):7.3f} ms")

        slow_gateway = gateways[1]
        idle = rss_mib(slow_gateway.pid)

        async def held():
            conns = await hold_streams(slow_gw_port, request_bytes(slow_gw_port, "/chat/stream", chat), args.streams)
            await asyncio.sleep(1.0)
            busy = rss_mib(slow_gateway.pid)
            for w in conns:
                w.close()
            return busy

        busy = asyncio.run(held())
        print(f"commander resident memory: idle {idle:.1f} MiB, "
              f"with {args.streams} concurrent open streams {busy:.1f} MiB")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
