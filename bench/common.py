"""What the bench scripts share: where the release binaries are, ports, processes, memory."""
import asyncio
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where cargo puts the release binaries: $CARGO_TARGET_DIR when set, as cargo itself does.
RELEASE = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listening on {port} after {timeout}s")


def rss_mib(pid):
    """Resident memory of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start(cmd, **kw):
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


async def hold_streams(port, raw, count):
    """Sends the request bytes `raw` on `count` connections to 127.0.0.1:`port` and waits until
    each has received the response headers and a first SSE event; returns the open writers."""
    writers = []

    async def open_one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        await reader.readuntil(b"\n\n")
        writers.append(writer)

    await asyncio.gather(*(open_one() for _ in range(count)))
    return writers
