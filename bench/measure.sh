#!/usr/bin/env bash
# Start-up, memory and login figures of the release binary.
#   bench/measure.sh            (builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=target/release/kci-lite
TMP=$(mktemp -d)
trap 'kill $(cat "$TMP/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$TMP"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export KCI_INITIAL_PASSWORD=bench-password SECRET_KEY=bench-secret-key-0123456789
URL="http://127.0.0.1:$PORT"

start() {
    local t0 t1
    t0=$(date +%s%N)
    "$BIN" serve --bind "127.0.0.1:$PORT" --db "$TMP/kci.db" >>"$TMP/log" 2>&1 &
    echo $! > "$TMP/pid"
    until curl -sf -o /dev/null "$URL/latest/"; do sleep 0.005; done
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 ))
}
stop() { kill -TERM "$(cat "$TMP/pid")"; wait "$(cat "$TMP/pid")" 2>/dev/null || true; }

echo "binary size: $(stat -c %s "$BIN") bytes"
echo "start-up, empty database: $(start) ms (bcrypt cost ${KCI_BCRYPT_COST:-12} for the admin)"
sleep 1
echo "idle RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/"$(cat "$TMP/pid")"/status)"
python3 - "$URL" <<'PY'
import sys, time, urllib.request, urllib.parse
url = sys.argv[1] + "/latest/user/login"
data = urllib.parse.urlencode({"username": "admin", "password": "bench-password"}).encode()
times = []
for _ in range(20):
    t = time.perf_counter()
    urllib.request.urlopen(urllib.request.Request(url, data=data)).read()
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print(f"login latency: p50 {times[10]:.1f} ms, max {times[-1]:.1f} ms (20 logins)")
PY
stop
echo "start-up, restarted database: $(start) ms"
stop
