// What every page of the console shares: calls to the API, the logged-in
// session, the page's frame (navigation, login, live indicator), the event
// stream and a few formatting helpers. Pages never build HTML from text:
// every value reaches the page through textContent or an attribute.

const TOKEN_KEY = "kci-lite.token";
const USER_KEY = "kci-lite.user";

// -- the API -----------------------------------------------------------------

// An answer other than 2xx: `status`, the contract's `detail` (a string, or
// the list of validation items of a 422), and the whole `body`.
export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && typeof body === "object" && "detail" in body ? body.detail : body;
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

// The query string of `params` (an object; null and undefined left out,
// arrays repeated).
export function queryString(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === null || value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) q.append(key, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

// Calls the API: `method` on `path` (under /latest), a JSON `body` unless
// `form` is given (then form-encoded). Resolves to the parsed answer (null
// for an empty one), rejects with ApiError.
export async function call(method, path, { body, form, params, token } = {}) {
  const headers = { Accept: "application/json" };
  const auth = token === undefined ? session.token() : token;
  if (auth) headers.Authorization = `Bearer ${auth}`;
  let payload;
  if (form) {
    headers["Content-Type"] = "application/x-www-form-urlencoded";
    payload = new URLSearchParams(form).toString();
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const resp = await fetch(`/latest${path}${queryString(params)}`, { method, headers, body: payload });
  const text = await resp.text();
  let parsed = null;
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = text; }
  }
  if (!resp.ok) {
    // A token the server no longer takes ends the session; a 401 with
    // another detail ("Unauthorized to complete the operation": not this
    // user's node) is only the answer to this call.
    const refused = parsed && typeof parsed === "object" && parsed.detail === "Unauthorized";
    if (resp.status === 401 && refused && auth && auth === session.token()) session.expired();
    throw new ApiError(resp.status, parsed);
  }
  return parsed;
}

export const get = (path, params) => call("GET", path, { params });

// The text a person reads for a failed call.
export function describeError(err) {
  if (!(err instanceof ApiError)) return String(err && err.message ? err.message : err);
  if (Array.isArray(err.detail)) {
    return err.detail.map((item) => `${(item.loc || []).join(".")}: ${item.msg}`).join("; ");
  }
  return `${err.status}: ${err.message}`;
}

// -- the session -------------------------------------------------------------

// The token lives in the browser tab's sessionStorage only: never in a URL,
// gone when the tab closes.
export const session = {
  token() { return sessionStorage.getItem(TOKEN_KEY); },
  user() {
    try { return JSON.parse(sessionStorage.getItem(USER_KEY) || "null"); } catch { return null; }
  },
  isAdmin() { const u = session.user(); return !!(u && u.is_superuser); },
  async login(username, password) {
    const answer = await call("POST", "/user/login", { form: { username, password }, token: null });
    const token = answer.access_token;
    const user = await call("GET", "/whoami", { token });
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(USER_KEY, JSON.stringify(user));
    window.dispatchEvent(new CustomEvent("kci-session"));
    return user;
  },
  async logout() {
    const token = session.token();
    session.forget();
    if (token) {
      try { await call("POST", "/user/logout", { token }); } catch { /* already gone */ }
    }
  },
  forget() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
    window.dispatchEvent(new CustomEvent("kci-session"));
  },
  expired() {
    session.forget();
    notify("Your session has ended: log in again.", "error");
  },
};

// Calls `render` now and whenever someone logs in or out.
export function onSession(render) {
  window.addEventListener("kci-session", render);
  render();
}

// -- building the page ---------------------------------------------------------

// An element: h("a", {href: "/x", class: "c"}, "text", child, ...).
// Attributes starting with "on" are listeners; null/false ones are skipped.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) {
      // listeners only: never an inline handler attribute
      if (typeof value === "function") el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Replaces the children of `el`.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const PAGES = [
  ["viewer", "Viewer"],
  ["dashboard", "Dashboard"],
  ["manage", "Manage"],
  ["analytics", "Analytics"],
  ["stats", "Stats"],
];

// Draws the frame of page `name` (header with navigation, login and the live
// indicator; a notice area) and returns the <main> element to fill.
export function frame(name) {
  const nav = h("nav", { "aria-label": "Console" },
    h("a", { href: "/", class: "brand" }, "KernelCI"),
    PAGES.map(([page, title]) =>
      h("a", { href: `/${page}`, "aria-current": page === name ? "page" : null }, title)),
    h("a", { href: "/docs" }, "API"));
  const live = h("span", { id: "live", class: "live off", role: "status", title: "Event stream" }, "offline");
  const account = h("div", { id: "account", class: "account" });
  const header = h("header", { class: "top" }, nav, h("div", { class: "right" }, live, account));
  const notices = h("div", { id: "notices", "aria-live": "polite" });
  const main = h("main", { id: "main" });
  document.body.replaceChildren(header, notices, main);
  onSession(() => drawAccount(account));
  return main;
}

function drawAccount(box) {
  const user = session.user();
  if (user) {
    fill(box,
      h("span", { class: "who", title: user.is_superuser ? "administrator" : "user" },
        user.username, user.is_superuser ? " (admin)" : ""),
      h("button", { type: "button", id: "logout", onclick: () => session.logout() }, "Log out"));
    return;
  }
  const form = h("form", { id: "login-form", class: "login" },
    h("input", { name: "username", placeholder: "username", autocomplete: "username", required: true, "aria-label": "Username" }),
    h("input", { name: "password", type: "password", placeholder: "password", autocomplete: "current-password", required: true, "aria-label": "Password" }),
    h("button", { type: "submit" }, "Log in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await session.login(form.username.value, form.password.value);
    } catch (err) {
      notify(`Login failed: ${describeError(err)}`, "error");
    }
  });
  fill(box, form);
}

// Shows a message at the top of the page for a while (errors until closed).
export function notify(text, kind = "info") {
  const box = document.getElementById("notices");
  if (!box) return;
  const note = h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", null, text),
    h("button", { type: "button", class: "close", "aria-label": "Dismiss", onclick: () => note.remove() }, "×"));
  box.append(note);
  if (kind !== "error") setTimeout(() => note.remove(), 5000);
}

// -- the event stream ----------------------------------------------------------

// Whether a node-channel event is the server's own node event. Anyone may
// `/publish` on channel `node` as well, and the server always sets the
// envelope's `owner` to the publisher; a node event's envelope carries the
// node's owner, which its data repeats. So an event whose data names
// another owner than its envelope (or none where the envelope has one) is
// not a node change, and pages do not show it as one.
export function isNodeEvent(envelope, data) {
  if (!data || typeof data !== "object" || typeof data.id !== "string" || !data.op) return false;
  return (envelope.owner ?? null) === (data.owner ?? null);
}

// Follows `GET /stream/{channel}` (public: every event of the channel;
// on `node`, only the server's node events are handed on, see isNodeEvent).
// `ready` resolves once the stream is open: everything committed after that
// is delivered. Events that arrive before `listen(handler)` is called are
// kept (up to a bound) and handed over then, flagged `early` (they may be
// older than what the page read after `ready`, so pages re-read what they
// touch). A reconnect resumes after the last event seen (the browser sends
// Last-Event-ID; after a hard failure the stream is reopened with
// `after=`), so nothing is missed; when something may have been (the early
// bound overflowed, or the stream failed before its first event), the page
// says so and asks for a reload.
export function follow(channel = "node", params = {}) {
  const EARLY_MAX = 10000;
  let handler = null;
  const early = [];
  let lastId = null;
  let source = null;
  let retry = null;
  let delay = 1000;
  let warned = false;
  let resolveReady;
  const ready = new Promise((resolve) => { resolveReady = resolve; });
  const indicator = () => document.getElementById("live");
  const show = (state, text) => {
    const el = indicator();
    if (el) { el.className = `live ${state}`; el.textContent = text; }
  };
  const missed = (why) => {
    if (warned) return;
    warned = true;
    notify(`${why}: reload the page to be sure it shows everything.`, "error");
  };

  const open = () => {
    const extra = lastId === null ? {} : { after: lastId };
    source = new EventSource(`/stream/${encodeURIComponent(channel)}${queryString({ ...params, ...extra })}`);
    source.onopen = () => { delay = 1000; show("on", "live"); resolveReady(); };
    source.onmessage = (msg) => {
      if (msg.lastEventId) lastId = msg.lastEventId;
      let envelope;
      try { envelope = JSON.parse(msg.data); } catch { return; }
      if (!envelope || typeof envelope !== "object") return;
      if (channel === "node" && !isNodeEvent(envelope, envelope.data)) return;
      const event = { seq: Number(msg.lastEventId), envelope, data: envelope.data };
      if (handler) {
        try { handler(event, false); } catch (err) { console.warn("event handler failed", err); }
      } else if (early.length < EARLY_MAX) {
        early.push(event);
      } else {
        missed("Too many changes arrived while the page was loading");
      }
    };
    source.onerror = () => {
      // Before its first event the browser has no Last-Event-ID to resume
      // from: what is committed until it is back would be missed.
      if (lastId === null) missed("The live connection broke before its first change");
      if (source.readyState === EventSource.CLOSED) {
        // refused (not a stream): reopen after the last event seen, a
        // little later each time
        show("off", "reconnecting");
        source.close();
        clearTimeout(retry);
        retry = setTimeout(open, delay);
        delay = Math.min(delay * 2, 30000);
      } else {
        show("wait", "reconnecting");
      }
    };
  };
  open();
  return {
    ready,
    listen(fn) {
      handler = fn;
      for (const event of early.splice(0)) {
        try { fn(event, true); } catch (err) { console.warn("event handler failed", err); }
      }
    },
    close() { clearTimeout(retry); if (source) source.close(); show("off", "offline"); },
  };
}

// -- formatting ----------------------------------------------------------------

// "2026-12-02 10:03:20" from a contract timestamp (UTC).
export function when(ts) {
  return ts ? String(ts).replace("T", " ").slice(0, 19) : "";
}

// "5 min ago" from a contract timestamp (UTC).
export function ago(ts, now = Date.now()) {
  if (!ts) return "";
  const then = Date.parse(`${String(ts).slice(0, 23)}Z`);
  if (Number.isNaN(then)) return "";
  const s = Math.max(0, Math.round((now - then) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// "1.5 MiB"
export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n) || 0;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
  return `${i === 0 ? value : value.toFixed(1)} ${units[i]}`;
}

// A node's state and result as one badge, coloured by the result when it
// has one, else by the state (classes "r-pass", "s-running", ...).
export function statusBadge(node) {
  const result = node.result || null;
  const cls = result ? `r-${result}` : `s-${node.state || "unknown"}`;
  return h("span", { class: `badge ${cls}`, dataset: { state: node.state || "", result: result || "", owner: node.owner || "" } },
    result ? `${node.state} · ${result}` : node.state || "?");
}

// Updates a badge made by statusBadge in place, from a node read from the
// API or from a node event's data (which has `op`). An event naming another
// owner than the node shown is not about that node (isNodeEvent: a
// publisher can only name itself) and changes nothing; false then.
export function updateBadge(el, node) {
  if ("op" in node && (node.owner || "") !== (el.dataset.owner || "")) return false;
  const fresh = statusBadge(node);
  el.dataset.owner = fresh.dataset.owner;
  el.className = fresh.className;
  el.dataset.state = fresh.dataset.state;
  el.dataset.result = fresh.dataset.result;
  el.textContent = fresh.textContent;
  el.classList.add("changed");
  setTimeout(() => el.classList.remove("changed"), 1500);
  return true;
}

// A link to a node's page in the viewer.
export function nodeLink(id, text) {
  return h("a", { href: `/viewer?node=${encodeURIComponent(id)}`, class: "node-link" }, text || id);
}

// The tree/branch/commit words of a checkout-like node's data.
export function revision(node) {
  const rev = (node.data && node.data.kernel_revision) || {};
  return { tree: rev.tree || "", branch: rev.branch || "", commit: rev.commit || "", describe: rev.describe || "" };
}
