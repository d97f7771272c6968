// Server statistics from GET /stats/server: database size, nodes by kind,
// events per minute over the last hour (an SVG bar chart drawn here),
// streams, subscriptions, queues and, for an administrator, each live
// subscription's backlog. Node events from the stream are counted in as
// they come; the figures are re-read after events (at most every 2 s) and
// every 15 s (queues and subscriptions change without node events).

import {
  frame, h, fill, get, follow, notify, describeError, session, onSession, when, ago, bytes,
} from "/static/js/console.js";

const THROTTLE = 2000;  // ms between re-reads caused by events
const STEADY = 15000;   // ms between re-reads anyway
const MINUTE = 60000;
const SVG = "http://www.w3.org/2000/svg";

// An SVG element (h() makes HTML ones).
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

const utc = (ts) => Date.parse(`${String(ts).slice(0, 23)}Z`);
const hhmm = (ms) => new Date(ms).toISOString().slice(11, 16);
const num = (n) => Number(n || 0).toLocaleString("en");

// -- the page ------------------------------------------------------------------

const main = frame("stats");
const asOf = h("p", { id: "as-of", class: "muted" }, "Loading…");
const box = (id, title, ...body) => h("section", { class: "panel", id, "aria-labelledby": `${id}-title` },
  h("h2", { id: `${id}-title` }, title), ...body);
const database = h("dl", { class: "kv", id: "db" });
const connections = h("dl", { class: "kv", id: "connections" });
const eventsNote = h("p", { id: "events-note", class: "muted" });
const chart = h("div", { id: "events-chart-box" });
const nodesTitle = h("p", { id: "nodes-total", class: "muted" });
const kinds = h("ul", { id: "node-kinds", class: "bars" });
const queues = h("div", { id: "queues" });
const subs = h("div", { id: "subscriptions" });

fill(main,
  h("div", { class: "row head" },
    h("h1", null, "Server statistics"),
    h("button", { type: "button", class: "secondary", id: "refresh", onclick: () => read() }, "Refresh")),
  asOf,
  h("div", { class: "grid" },
    box("database", "Database", database),
    box("streams", "Streams and subscriptions", connections)),
  box("events", "Events per minute, last hour", eventsNote, chart),
  h("div", { class: "grid" },
    box("nodes", "Nodes by kind", nodesTitle, kinds),
    box("queue-box", "Queues", queues)),
  box("subs", "Live subscriptions", subs));

// -- state ---------------------------------------------------------------------

// The server counts a subscription's backlog up to this many events.
const BEHIND_CAP = 1000;

let stats = null;       // the last figures, with live events counted in
let details = null;     // GET /stats/subscriptions by id (admins), or null
let drawing = false;

// Counts a node event in: its minute's bar, and a created node's kind.
// Events the last read already counted (sequence id not above its
// last_sequence_id) are left out.
function countEvent(event) {
  if (!stats || !(event.seq > stats.events.last_sequence_id)) return;
  stats.events.last_sequence_id = event.seq;
  const ev = stats.events;
  // Bucketed by when the page received it: the envelope's `time` may be
  // whatever a publisher wrote.
  let i = Math.floor((Date.now() - ev.start) / MINUTE);
  // New minutes began since the read: move the window on (all of it at
  // most, however long the page slept).
  const late = Math.min(i - ev.per_minute.length + 1, ev.per_minute.length);
  if (late > 0) {
    ev.per_minute.splice(0, late);
    ev.per_minute.push(...new Array(late).fill(0));
    ev.start += (i - ev.per_minute.length + 1) * MINUTE;
    i = ev.per_minute.length - 1;
  }
  if (i >= 0) ev.per_minute[i] += 1;
  const d = event.data;
  if (d && d.op === "created" && typeof d.kind === "string") {
    stats.nodes[d.kind] = (stats.nodes[d.kind] || 0) + 1;
    stats.nodes_total += 1;
  }
  if (!drawing) {
    drawing = true;
    requestAnimationFrame(() => { drawing = false; draw(); });
  }
}

// -- reading -------------------------------------------------------------------

let reading = false;
let again = false;
let last = 0;
let timer = null;
let failing = false;

async function read() {
  if (reading) { again = true; return; }
  reading = true;
  last = Date.now();
  try {
    const admin = session.isAdmin();
    const [fresh, list] = await Promise.all([
      get("/stats/server"),
      admin ? get("/stats/subscriptions").catch(() => null) : null,
    ]);
    fresh.events.start = utc(fresh.events.per_minute_since);
    stats = fresh;
    details = list ? new Map(list.map((sub) => [sub.id, sub])) : null;
    failing = false;
    draw();
  } catch (err) {
    // One notice per run of failures, not one every 15 s.
    if (!failing) notify(`Could not read the server's figures: ${describeError(err)}`, "error");
    failing = true;
    asOf.textContent = `Figures could not be read (${describeError(err)}); retrying.`;
  }
  reading = false;
  if (again) { again = false; soon(); }
}

// Re-reads within THROTTLE of the last read, never more often.
function soon() {
  if (timer) return;
  timer = setTimeout(() => { timer = null; read(); }, Math.max(0, last + THROTTLE - Date.now()));
}

// -- drawing -------------------------------------------------------------------

const pair = (dt, dd, id) => [h("dt", null, dt), h("dd", { id }, dd)];

function draw() {
  if (!stats) return;
  asOf.textContent = `Figures of ${when(stats.time)} UTC, kept current from the event stream.`;
  const db = stats.database;
  fill(database,
    pair("Database file", bytes(db.bytes), "db-size"),
    pair("Free inside", bytes(db.free_bytes), "db-free"),
    pair("Write-ahead log", bytes(db.wal_bytes), "db-wal"));
  database.querySelector("#db-size").dataset.bytes = db.bytes;
  fill(connections,
    pair("Open event streams", num(stats.streams), "open-streams"),
    pair("Live subscriptions", num(stats.subscriptions), "sub-count"),
    pair("Requests served", num(stats.requests), "requests"),
    pair("Last event", `#${num(stats.events.last_sequence_id)}`, "last-seq"));
  drawChart(stats.events);
  drawKinds();
  drawQueues();
  drawSubscriptions();
}

// A bar per minute, oldest left; the last bar is the current minute so far.
function drawChart(ev) {
  const counts = ev.per_minute;
  const n = counts.length;
  const total = counts.reduce((a, b) => a + b, 0);
  const peak = Math.max(0, ...counts);
  eventsNote.textContent = total
    ? `${num(total)} events in the last hour, at most ${num(peak)} in one minute.`
    : "No events in the last hour.";
  // Drawn at the width it is shown at, so its text keeps its size on a
  // phone and on a wide screen.
  const W = Math.max(300, Math.min(1400, Math.round(chart.clientWidth || 640)));
  const [H, left, bottom, top] = [160, 34, 18, 8];
  const plot = H - bottom - top;
  const slot = (W - left) / n;
  const scale = Math.max(1, peak);
  const svg = s("svg", {
    class: "chart", id: "events-chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Events per minute over the last hour: ${total} in all, peak ${peak}`,
  });
  svg.append(
    s("line", { class: "axis", x1: left, y1: top + plot, x2: W, y2: top + plot }),
    s("text", { x: left - 4, y: top + 9, "text-anchor": "end" }, num(scale)),
    s("text", { x: left - 4, y: top + plot, "text-anchor": "end" }, "0"),
    s("text", { x: left, y: H - 4 }, `${hhmm(ev.start)} UTC`),
    s("text", { x: left + slot * (n / 2), y: H - 4, "text-anchor": "middle" }, "−30 min"),
    s("text", { x: W, y: H - 4, "text-anchor": "end" }, "now"));
  counts.forEach((c, i) => {
    if (!c) return;
    const height = Math.max(1, (c / scale) * plot);
    const at = ev.start + i * MINUTE;
    svg.append(s("rect", {
      class: i === n - 1 ? "bar now" : "bar", "data-n": c,
      x: (left + i * slot + 1).toFixed(1), y: (top + plot - height).toFixed(1),
      width: Math.max(1, slot - 2).toFixed(1), height: height.toFixed(1),
    }, s("title", null, `${hhmm(at)} UTC: ${c} event${c === 1 ? "" : "s"}${i === n - 1 ? " (so far)" : ""}`)));
  });
  fill(chart, svg);
}

function drawKinds() {
  const entries = Object.entries(stats.nodes).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  nodesTitle.textContent = `${num(stats.nodes_total)} nodes in all.`;
  const top = Math.max(1, ...entries.map(([, n]) => n));
  fill(kinds, entries.length ? entries.map(([kind, n]) => {
    // Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
    const bar = h("span", { class: "fill" });
    bar.style.width = `${((n / top) * 100).toFixed(1)}%`;
    return h("li", { dataset: { kind } },
      h("span", { class: "kind" }, kind),
      h("span", { class: "track", "aria-hidden": "true" }, bar),
      h("span", { class: "n" }, num(n)));
  }) : h("li", { class: "empty" }, "No nodes yet"));
}

function drawQueues() {
  if (!stats.queues.length) {
    fill(queues, h("p", { class: "empty" }, "No messages waiting in any queue."));
    return;
  }
  fill(queues, h("div", { class: "table-wrap" }, h("table", { id: "queue-table" },
    h("thead", null, h("tr", null, h("th", null, "List"), h("th", { class: "num" }, "Waiting"))),
    h("tbody", null, stats.queues.map((q) => h("tr", { dataset: { list: q.list } },
      h("td", null, h("code", null, q.list)), h("td", { class: "num" }, num(q.length))))))));
}

function drawSubscriptions() {
  const backlog = stats.subscription_backlog;
  if (!backlog) {
    const user = session.user();
    fill(subs, h("p", { id: "subs-note", class: "note" },
      user ? `You are logged in as ${user.username}, who is not an administrator: ` : "",
      `${num(stats.subscriptions)} live subscription${stats.subscriptions === 1 ? "" : "s"}. `,
      "Subscription details need an admin login."));
    return;
  }
  if (!backlog.length) {
    fill(subs, h("p", { class: "empty" }, "No live subscriptions."));
    return;
  }
  const rows = [...backlog].sort((a, b) => b.behind - a.behind || a.id - b.id).map((sub) => {
    const more = (details && details.get(sub.id)) || {};
    return h("tr", { dataset: { id: sub.id } },
      h("td", { class: "num" }, sub.id),
      h("td", null, h("code", null, sub.channel)),
      h("td", null, sub.user),
      h("td", { class: "hide-narrow" }, more.promiscuous === undefined ? "" : more.promiscuous ? "yes" : "no"),
      h("td", { class: "hide-narrow", title: when(more.created) }, ago(more.created)),
      h("td", { class: "last-poll", title: when(sub.last_poll) }, sub.last_poll ? ago(sub.last_poll) : "never"),
      h("td", { class: `num behind${sub.behind ? " lagging" : ""}` },
        sub.behind >= BEHIND_CAP ? `${num(BEHIND_CAP)}+` : num(sub.behind)));
  });
  const cut = stats.subscriptions > backlog.length
    ? h("p", { class: "note" }, `The ${num(backlog.length)} oldest of ${num(stats.subscriptions)} live subscriptions.`)
    : null;
  fill(subs, h("div", { class: "table-wrap" }, h("table", { id: "sub-table" },
    h("thead", null, h("tr", null,
      h("th", { class: "num" }, "Id"), h("th", null, "Channel"), h("th", null, "User"),
      h("th", { class: "hide-narrow" }, "Promiscuous"), h("th", { class: "hide-narrow" }, "Created"),
      h("th", null, "Last poll"), h("th", { class: "num", title: "stored events not yet delivered" }, "Behind"))),
    h("tbody", null, rows))), cut);
}

// -- start -------------------------------------------------------------------------

const stream = follow("node");
stream.listen((event) => { countEvent(event); soon(); });
onSession(() => read());
setInterval(soon, STEADY);
let resized = null;
window.addEventListener("resize", () => {
  cancelAnimationFrame(resized);
  resized = requestAnimationFrame(() => stats && drawChart(stats.events));
});
