#!/usr/bin/env bash
# Instructions per /v1/chat/completions call of one commander binary, counted by callgrind: the
# figure that does not drift with the machine (sequential or even interleaved timings on this
# shared 2-core machine move by 10% from one minute to the next; instruction counts do not).
#
#   bench/callgrind.sh BIN [CALLS=1000] [WARMUP=200]
#   EXTRA_TOML='...' AB_HEADER='Authorization: Bearer ...' bench/callgrind.sh target/release/commander
#
# One server worker, one connection; the counters are zeroed after WARMUP calls and dumped after
# CALLS more, so start-up and warm-up cancel out. Needs valgrind, oha (else a Python client is
# used: compare only figures taken with the same client), and release builds of
# the binary and of fake-upstream (target/release or CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "$1"); CALLS=${2:-1000}; WARMUP=${3:-200}
FAKE=${CARGO_TARGET_DIR:-target}/release/fake-upstream
WORK=$(mktemp -d)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; sleep 0.5; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UPSTREAM=$(free_port); PORT=$(free_port)
"$FAKE" --bind "127.0.0.1:$UPSTREAM" --chunks 8 --workers 1 >/dev/null 2>&1 & PIDS+=($!)
cat > "$WORK/specialists.json" <<JSON
{"specialists":[{"id":"bench","name":"Bench","provider":"openai","model":"gpt-4o-mini","system_prompt":"Answer.","temperature":0.2,"max_tokens":64}]}
JSON
cat > "$WORK/commander.toml" <<TOML
[server]
bind = "127.0.0.1:$PORT"
workers = 1
max_connections_per_client = 100000
[specialists]
path = "specialists.json"
[providers.openai]
api_key = "bench-key"
base_url = "http://127.0.0.1:$UPSTREAM/v1"
[rate_limit]
requests = 1000000000
window_seconds = 1
[log]
level = "warn"
${EXTRA_TOML:-}
TOML
(cd "$WORK" && exec valgrind --tool=callgrind --callgrind-out-file="$WORK/out.%p" \
  "$BIN" --config commander.toml >"$WORK/log" 2>&1) & PIDS+=($!)
for _ in $(seq 1 600); do curl -sf "127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
HEADERS=(-H 'content-type: application/json')
[ -n "${AB_HEADER:-}" ] && HEADERS+=(-H "$AB_HEADER")
body='{"model":"bench","messages":[{"role":"user","content":"hi"}]}'
if command -v oha >/dev/null; then
  load() { oha -n "$1" -c 1 --no-tui -m POST "${HEADERS[@]}" -d "$body" \
    "http://127.0.0.1:$PORT/v1/chat/completions" | awk '/Success rate/{print "success rate " $3}'; }
else
  # No oha (it takes a while to build): one keep-alive connection from Python's standard library.
  # The server's instructions are what is counted, so A and B must only use the same client.
  load() {
    python3 - "$1" "$PORT" "$body" "${AB_HEADER:-}" <<'PY'
import http.client, sys
calls, port, body, extra = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
headers = {"content-type": "application/json"}
if extra:
    name, _, value = extra.partition(":")
    headers[name.strip()] = value.strip()
conn, ok = http.client.HTTPConnection("127.0.0.1", port), 0
for _ in range(calls):
    conn.request("POST", "/v1/chat/completions", body, headers)
    response = conn.getresponse()
    response.read()
    ok += response.status == 200
print(f"success rate {ok / calls:.4f}")
PY
  }
fi
load "$WARMUP" >/dev/null
callgrind_control -z >/dev/null
load "$CALLS"
callgrind_control -d >/dev/null
sleep 1
# The dump asked for above is the process's first numbered one: exactly the CALLS calls.
total=$(awk '/^summary:|^totals:/{print $2; exit}' "$WORK"/out.*.1)
python3 -c "print(f'instructions per call: {$total / $CALLS:,.0f}')"
# KEEP=FILE keeps the dump, for callgrind_annotate.
[ -n "${KEEP:-}" ] && cp "$WORK"/out.*.1 "$KEEP"
true
