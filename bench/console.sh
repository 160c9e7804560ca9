#!/usr/bin/env bash
# Server time of the console's overview on a usage log of ROWS calls (default a million): fills a
# fresh SQLite file (or, with DATABASE_URL=postgres://..., that database, which must exist and be
# empty) with the seed_usage example, starts a release commander on it and reads the overview's
# `Server-Timing` header (db = the store's queries, render = the page) over RUNS requests.
#
#   bench/console.sh [ROWS=1000000] [DAYS=30] [RUNS=20] [QUERY='range=24h']
#   KEEP=/tmp/1m.db bench/console.sh ...   then   SEEDED=sqlite:///tmp/1m.db bench/console.sh ...
#
# Needs release builds: cargo build --release -p commander -p usage-store --example seed_usage
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}; DAYS=${2:-30}; RUNS=${3:-20}; QUERY=${4:-range=24h}
TARGET=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; sleep 0.5; rm -rf "$WORK"; }
trap cleanup EXIT
URL=${DATABASE_URL:-sqlite://$WORK/usage.db}

if [ -n "${SEEDED:-}" ]; then
  URL=$SEEDED  # a database seeded before (e.g. by an earlier run with KEEP=1)
else
  echo "seeding $ROWS rows over $DAYS days into ${URL%%\?*}"
  "$TARGET/examples/seed_usage" --database-url "$URL" --rows "$ROWS" --days "$DAYS" >"$WORK/seed.log"
  grep -i "seeded" "$WORK/seed.log" || true
  if [ -n "${KEEP:-}" ] && [[ $URL == sqlite://* ]]; then
    cp "${URL#sqlite://}" "$KEEP" && echo "kept a copy at $KEEP (SEEDED=sqlite://$KEEP reuses it)"
  fi
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/commander.toml" <<TOML
[server]
bind = "127.0.0.1:$PORT"
[database]
url = "$URL"
[specialists]
path = "specialists.json"
[log]
level = "warn"
TOML
BIN=$(realpath "$TARGET/commander")
(cd "$WORK" && exec "$BIN" --config commander.toml >"$WORK/log" 2>&1) & PIDS+=($!)
for _ in $(seq 1 600); do curl -sf "127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

# Auth is disabled (loopback): the sign-in page hands out the local operator's session.
COOKIE=$(curl -s -D - -o /dev/null "127.0.0.1:$PORT/console/sign-in" \
  | awk -F'[:;] *' 'tolower($1)=="set-cookie" && $2 ~ /^commander_console=/ {print $2; exit}')
[ -n "$COOKIE" ] || { echo "no session cookie"; exit 1; }

echo "GET /console?$QUERY, $RUNS times (the first is the cold one)"
for i in $(seq 1 "$RUNS"); do
  curl -s -o "$WORK/page.html" -D "$WORK/headers" -H "Cookie: $COOKIE" \
    -w '%{http_code} %{size_download} %{time_total}\n' "127.0.0.1:$PORT/console?$QUERY" >"$WORK/curl"
  read -r status size total <"$WORK/curl"
  timing=$(awk -F': ' 'tolower($1)=="server-timing" {print $2}' "$WORK/headers" | tr -d '\r')
  echo "run $i: status $status, $size bytes, server-timing [$timing], client total ${total}s"
done | tee "$WORK/runs"
awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^db;dur=/ || $i ~ /^\[db;dur=/) { gsub(/[^0-9.]/, "", $i); db[n] = $i }
       for (i = 1; i <= NF; i++) if ($i ~ /^render;dur=/) { gsub(/[^0-9.]/, "", $i); render[n] = $i }
       n++ }
     END { asort(db); asort(render); m = int((n + 1) / 2);
           printf "median over %d runs: db %.1f ms, render %.1f ms\n", n, db[m], render[m] }' "$WORK/runs"
