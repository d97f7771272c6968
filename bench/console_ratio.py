# Throughput of the console's figures (GET /stats/server anonymous and as an admin
# with 20 subscriptions, /metrics), a console page and its script, each against
# hello-world (GET / as JSON) on the same server, side by side.
# Usage: python3 bench/console_ratio.py target/release/kci-lite DB [seconds]
# (ADMIN_USER / ADMIN_PW: an admin of DB; default admin / pw-12345678,
# which a new DB gets).
import sys, socket, threading, time, json, subprocess, os, re, urllib.request, urllib.parse
binary, db = sys.argv[1], sys.argv[2]; secs = float(sys.argv[3]) if len(sys.argv) > 3 else 4
env = dict(os.environ, KCI_INITIAL_PASSWORD="pw-12345678", KCI_BCRYPT_COST="4")
p = subprocess.Popen([binary, "serve", "--db", db, "--bind", "127.0.0.1:0"], env=env, stderr=subprocess.PIPE, text=True)
for line in p.stderr:
    m = re.search(r"serving http://127\.0\.0\.1:(\d+)", line)
    if m: port = int(m.group(1)); break
threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
def get(path, extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n{extra}\r\n".encode()
try:
    tok = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/latest/user/login", data=urllib.parse.urlencode({"username":os.environ.get("ADMIN_USER","admin"),"password":os.environ.get("ADMIN_PW","pw-12345678")}).encode()))["access_token"]
except Exception as e:
    tok = None; print("no admin token:", e)
# 20 subscriptions, so the admin's backlog has rows
if tok:
    for _ in range(20):
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/latest/subscribe/node", data=b"{}", headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"}))
def rate(req, conns=8):
    n = [0]; stop = time.time() + secs
    def run():
        s = socket.create_connection(("127.0.0.1", port))
        while time.time() < stop:
            s.sendall(req); buf = b""
            while b"\r\n\r\n" not in buf: buf += s.recv(65536)
            head, rest = buf.split(b"\r\n\r\n", 1)
            lens = [l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")]
            if lens:
                cl = int(lens[0])
                while len(rest) < cl: rest += s.recv(65536)
            else:  # chunked
                while not rest.endswith(b"0\r\n\r\n"): rest += s.recv(65536)
            n[0] += 1
    ts = [threading.Thread(target=run) for _ in range(conns)]
    [t.start() for t in ts]; [t.join() for t in ts]
    return n[0] / secs
cases = [("GET /stats/server", get("/latest/stats/server")), ("GET /metrics", get("/metrics")), ("GET /viewer", get("/viewer")), ("GET /static/js/viewer.js", get("/static/js/viewer.js"))]
if tok: cases.insert(1, ("GET /stats/server (admin, 20 subs)", get("/latest/stats/server", f"Authorization: Bearer {tok}\r\n")))
hello = get("/latest/")
for name, req in cases:
    h = rate(hello); q = rate(req); h2 = rate(hello)
    print(f"{name:40s} {q:8.0f}/s   hello {((h+h2)/2):8.0f}/s   ratio {q/((h+h2)/2):.3f}")
p.terminate(); p.wait()
