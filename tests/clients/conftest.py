"""Starts commander (debug build) in front of three conversational fake upstreams, one per
wire, with one specialist per provider, on free 127.0.0.1 ports; stops them all at the end.

Builds nothing: `.ci/run` (or you) runs `cargo build -p commander -p fake-upstream` first.
"""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"
START_TIMEOUT_SECONDS = 30

# specialist id -> (provider, model, fake wire)
SPECIALISTS = {
    "openai_specialist": ("openai", "gpt-4o", "openai"),
    "anthropic_specialist": ("anthropic", "claude-sonnet-4-5", "anthropic"),
    "google_specialist": ("google", "gemini-2.5-flash", "google"),
}

# embedding specialist id -> (provider, model): the embeddings tests' (`kind: "embedding"`).
EMBEDDERS = {
    "openai_embedder": ("openai", "text-embedding-3-small"),
    "google_embedder": ("google", "gemini-embedding-001"),
    "mock_embedder": ("mock", "mock-embed"),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, what):
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {START_TIMEOUT_SECONDS}s")


def binary(name):
    path = TARGET / name
    if not path.exists():
        pytest.exit(f"{path} is missing: run `cargo build -p commander -p fake-upstream`", 2)
    return str(path)


def start_commander(directory, config, port, what):
    """Starts commander with `config` in `directory` (none of this environment's COMMANDER_*
    variables reach it) and waits until it answers /health on `port`; returns the process and
    its URL. Its output goes to `directory`/commander.out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDER")}
    server = subprocess.Popen(
        [binary("commander"), "--config", str(config), "serve"],
        cwd=directory,
        env=env,
        stdout=open(directory / "commander.out", "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, server, what)
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            assert response.status == 200
    except BaseException:
        server.kill()
        raise
    return server, url


@pytest.fixture(scope="session")
def commander_url():
    processes = []
    workdir = tempfile.TemporaryDirectory(prefix="commander-clients-")
    directory = Path(workdir.name)
    try:
        fakes = {}
        for wire in ("openai", "anthropic", "google"):
            port = free_port()
            process = subprocess.Popen(
                [binary("fake-upstream"), "--wire", wire, "--conversational",
                 "--bind", f"127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL,
                stderr=open(directory / f"fake-{wire}.log", "w"),
            )
            processes.append(process)
            wait_for_port(port, process, f"fake-upstream --wire {wire}")
            fakes[wire] = f"http://127.0.0.1:{port}"

        catalogue = {"specialists": [
            {"id": id, "name": id, "provider": provider, "model": model,
             "system_prompt": "You are a test specialist."}
            for id, (provider, model, _) in SPECIALISTS.items()
        ] + [
            {"id": id, "name": id, "provider": provider, "model": model, "kind": "embedding"}
            for id, (provider, model) in EMBEDDERS.items()
        ]}
        (directory / "specialists.json").write_text(json.dumps(catalogue))
        port = free_port()
        config = directory / "commander.toml"
        config.write_text(f"""
[server]
bind = "127.0.0.1:{port}"
workers = 1

# Every test calls from 127.0.0.1: the default 60 requests an hour would cut the suite short.
[rate_limit]
requests = 100000

[database]
url = "sqlite://{directory / 'usage.db'}"

[specialists]
path = "{directory / 'specialists.json'}"

[providers.openai]
api_key = "fake-openai-key"
base_url = "{fakes['openai']}/v1"
total_timeout_ms = 20000

[providers.anthropic]
api_key = "fake-anthropic-key"
base_url = "{fakes['anthropic']}"
total_timeout_ms = 20000

[providers.google]
api_key = "fake-google-key"
base_url = "{fakes['google']}"
total_timeout_ms = 20000
""")
        server, url = start_commander(directory, config, port, "commander")
        processes.append(server)
        yield url
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        logs = directory / "commander.out"
        if logs.exists() and os.environ.get("CLIENTS_SHOW_LOGS"):
            print(logs.read_text())
        workdir.cleanup()


@pytest.fixture(params=list(SPECIALISTS))
def specialist(request):
    """Each test runs once per provider's specialist (its id is the OpenAI `model`)."""
    return request.param


@pytest.fixture(params=list(EMBEDDERS))
def embedder(request):
    """Each embeddings test runs once per embedding specialist."""
    return request.param


@pytest.fixture
def base_url(commander_url):
    return f"{commander_url}/v1"


# The Anthropic SDK's bad-key test's commander: auth required, one API key, one specialist
# (`keyed`) on the built-in mock.
KEYED_API_KEY = "cmdr_anthropic_sdk_key_0000000000000000000000000000000000000000000"


@pytest.fixture(scope="session")
def keyed_commander_url():
    import hashlib

    workdir = tempfile.TemporaryDirectory(prefix="commander-keyed-")
    directory = Path(workdir.name)
    server = None
    try:
        catalogue = {"specialists": [{"id": "keyed", "name": "keyed", "provider": "mock",
                                      "model": "mock-echo", "system_prompt": "Echo."}]}
        (directory / "specialists.json").write_text(json.dumps(catalogue))
        port = free_port()
        config = directory / "commander.toml"
        config.write_text(f"""
[server]
bind = "127.0.0.1:{port}"
workers = 1

[database]
url = "sqlite://{directory / 'usage.db'}"

[specialists]
path = "{directory / 'specialists.json'}"

[auth]
mode = "required"

[[auth.api_keys]]
name = "sdk"
email = "sdk@example.com"
role = "user"
sha256 = "{hashlib.sha256(KEYED_API_KEY.encode()).hexdigest()}"
""")
        server, url = start_commander(directory, config, port, "commander (keyed)")
        yield url
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        workdir.cleanup()


# The budget tests' commander: its own process and config, so the suite's other tests never
# meet a budget. The specialist `metered` (on the built-in mock) is covered by a budget of 0,
# which refuses every call; `unmetered` by none.
BUDGET_ID = "metered-spent"


@pytest.fixture(scope="session")
def budget_commander_url():
    workdir = tempfile.TemporaryDirectory(prefix="commander-budgets-")
    directory = Path(workdir.name)
    server = None
    try:
        catalogue = {"specialists": [
            {"id": id, "name": id, "provider": "mock", "model": "mock-echo",
             "system_prompt": "You are a test specialist.",
             "pricing": {"input_per_1m": 1.0, "output_per_1m": 2.0}}
            for id in ("metered", "unmetered")
        ]}
        (directory / "specialists.json").write_text(json.dumps(catalogue))
        port = free_port()
        config = directory / "commander.toml"
        config.write_text(f"""
[server]
bind = "127.0.0.1:{port}"
workers = 1

[database]
url = "sqlite://{directory / 'usage.db'}"
flush_interval_ms = 20

[specialists]
path = "{directory / 'specialists.json'}"

[[budgets.limits]]
id = "{BUDGET_ID}"
scope = "specialist"
subject = "metered"
period = "total"
limit_usd = 0
""")
        server, url = start_commander(directory, config, port, "commander (budgets)")
        yield url
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        logs = directory / "commander.out"
        if logs.exists() and os.environ.get("CLIENTS_SHOW_LOGS"):
            print(logs.read_text())
        workdir.cleanup()
