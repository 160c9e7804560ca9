#!/usr/bin/env bash
# Interleaved A/B of two commander binaries (or one binary under two environments) against the
# same fast fake upstream: each round loads A, then B, for DURATION seconds at CONNS connections
# on /v1/chat/completions, so machine-wide drift hits both alike (sequential bench/run.py runs
# on this shared 2-core machine differ by 10% or more from one minute to the next).
#
#   bench/ab.sh A_BIN B_BIN [CONNS=64] [ROUNDS=3] [DURATION=8]
#   A_ENV="COMMANDER__DATABASE__DURABILITY=memory" bench/ab.sh target/release/commander target/release/commander
#
# A_TOML / B_TOML: TOML appended to that side's config (sections the environment cannot express,
# such as [[budgets.limits]]); AB_HEADER: one more request header for both sides (e.g. the
# Authorization an [auth] section in the TOML requires).
#
# Needs release builds of both binaries and of fake-upstream (target/release), and oha.
set -euo pipefail
cd "$(dirname "$0")/.."
A_BIN=$(realpath "$1"); B_BIN=$(realpath "$2")
CONNS=${3:-64}; ROUNDS=${4:-3}; DURATION=${5:-8}
FAKE=${CARGO_TARGET_DIR:-target}/release/fake-upstream
WORK=$(mktemp -d)
PIDS=()
# start() runs in a command substitution (a subshell), so its servers' pids come back in files.
cleanup() { kill "${PIDS[@]}" $(cat "$WORK"/*/pid 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UPSTREAM=$(free_port)
"$FAKE" --bind "127.0.0.1:$UPSTREAM" --chunks 8 --workers 1 >/dev/null 2>&1 & PIDS+=($!)

start() { # side binary env toml
  local dir="$WORK/$1" port; port=$(free_port)
  mkdir -p "$dir"
  cat > "$dir/specialists.json" <<JSON
{"specialists":[{"id":"bench","name":"Bench","provider":"openai","model":"gpt-4o-mini","system_prompt":"Answer.","temperature":0.2,"max_tokens":64}]}
JSON
  cat > "$dir/commander.toml" <<TOML
[server]
bind = "127.0.0.1:$port"
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
$4
TOML
  (cd "$dir" && exec env $3 "$2" --config commander.toml >/dev/null 2>&1) & echo $! > "$dir/pid"
  for _ in $(seq 1 100); do curl -sf "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  echo "$port"
}
PORT_A=$(start a "$A_BIN" "${A_ENV:-}" "${A_TOML:-}")
PORT_B=$(start b "$B_BIN" "${B_ENV:-}" "${B_TOML:-}")
HEADERS=(-H 'content-type: application/json')
[ -n "${AB_HEADER:-}" ] && HEADERS+=(-H "$AB_HEADER")

body='{"model":"bench","messages":[{"role":"user","content":"hi"}]}'
declare -A total=([A]=0 [B]=0)
for round in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    port=$PORT_A; [ "$side" = B ] && port=$PORT_B
    out=$(oha -z "${DURATION}s" -c "$CONNS" --no-tui -m POST "${HEADERS[@]}" \
      -d "$body" "http://127.0.0.1:$port/v1/chat/completions")
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out"); p50=$(awk '/50.00%/{print $3}' <<<"$out")
    echo "round $round $side: $rps req/s, p50 $p50 ms"
    total[$side]=$(python3 -c "print(${total[$side]} + $rps)")
  done
done
python3 -c "print(f'B/A throughput: {${total[B]} / ${total[A]}:.3f}')"
