// The node browser (API.md 18.6): a filtered, paged list of nodes, newest
// first, and each node's page (fields, artifacts, ancestors, tree of
// descendants). Every view lives in the URL (/viewer?kind=checkout&offset=50,
// /viewer?node=<id>) and stays current through the node event stream.
import {
  ago, describeError, fill, follow, frame, get, h, nodeLink, notify, statusBadge,
  updateBadge, when,
} from "./console.js";

const RESERVED = ["node", "offset", "limit"]; // viewer parameters; the rest is the filter
const DEFAULT_LIMIT = 25;
const PAGE_SIZES = [25, 50, 100, 200];
const LIVE_ROWS_MAX = 100; // rows added live above a page before the oldest are dropped
const CHECK_BATCH = 100; // new ids asked about in one request
const PENDING_MAX = 1000; // new ids waiting to be asked about
const HELD_MAX = 500; // events kept while a view loads
const CHAIN_MAX = 32; // ancestors walked
const TREE_DEPTH_MAX = 8;
const TREE_LEVEL_MAX = 300; // nodes per tree level
const PARENTS_PER_CALL = 100; // ids in one parent__in

const FIELDS = ["kind", "state", "result", "name", "group", "owner", "parent", "treeid", "path", "id",
  "data.kernel_revision.tree", "data.kernel_revision.branch", "data.kernel_revision.commit",
  "data.arch", "data.platform", "data.error_code", "created", "updated"];
const SUGGEST = {
  kind: ["checkout", "kbuild", "job", "test", "process", "regression", "node"],
  state: ["running", "available", "closing", "done"],
  result: ["pass", "fail", "skip", "incomplete", "null"],
};
// Builder operators: the API's key suffixes (API.md 7) and how they read.
const OPS = [["", "="], ["ne", "!="], ["gt", ">"], ["gte", ">="], ["lt", "<"], ["lte", "<="],
  ["re", "~ regex"], ["in", "in a,b"], ["nin", "not in"]];
const OP_NAMES = new Set(["lt", "gt", "lte", "gte", "ne", "re", "in", "nin", "int"]);
// Shorthand the raw box also accepts: `result!=pass`, `created>2026-01-01`, `name~^base`.
const SHORT = { "!=": "ne", ">=": "gte", "<=": "lte", ">": "gt", "<": "lt", "~": "re", "=": "" };

const isId = (v) => typeof v === "string" && /^[0-9a-f]{24}$/.test(v);

// -- the query language in text --------------------------------------------------

// "field__op" → {field, op}; as the API, only a single `__` with a known
// operator splits (anything else stays a literal field name).
function splitKey(key) {
  const at = key.indexOf("__");
  const op = at > 0 ? key.slice(at + 2) : "";
  return at > 0 && OP_NAMES.has(op) ? { field: key.slice(0, at), op } : { field: key, op: "" };
}

function quote(value) {
  return value === "" || /[\s&"%]/.test(value) ? `"${value.replace(/["\\]/g, "\\$&")}"` : value;
}

const formatRaw = (pairs) => pairs.map(([k, v]) => `${k}=${quote(v)}`).join(" ");

// The raw box: conditions separated by spaces or `&` (a pasted query string
// or viewer URL works too), values in double quotes when they hold spaces.
// Unquoted values are percent-decoded. Returns [[key, value], ...] or throws.
function parseRaw(text) {
  let s = text.trim();
  const pasted = /^(https?:|\/)/.test(s); // a viewer URL: its pager parameters are dropped
  if (pasted) s = s.includes("?") ? s.slice(s.indexOf("?") + 1) : "";
  s = s.replace(/^\?/, "");
  const token = /[\s&]*([^\s&=!<>~"]+)(!=|>=|<=|=|>|<|~)(?:"((?:[^"\\]|\\.)*)"|([^\s&"]*))(?=[\s&]|$)/y;
  const pairs = [];
  while (token.lastIndex < s.length) {
    if (/^[\s&]*$/.test(s.slice(token.lastIndex))) break;
    const at = token.lastIndex;
    const m = token.exec(s);
    if (!m) throw new Error(`Cannot read the query at “${s.slice(at, at + 20).trim()}”: write field=value`);
    let key = m[1];
    const op = SHORT[m[2]];
    if (op) key = `${splitKey(key).field}__${op}`;
    let value = m[3] !== undefined ? m[3].replace(/\\(.)/g, "$1") : m[4];
    if (m[3] === undefined && value.includes("%")) {
      try { value = decodeURIComponent(value); } catch { /* keep it as typed */ }
    }
    if (RESERVED.includes(key) && pasted) continue;
    if (RESERVED.includes(key)) throw new Error(`“${key}” is not a condition (the pager sets limit and offset)`);
    pairs.push([key, value]);
  }
  return pairs;
}

// -- the URL is the view ---------------------------------------------------------

function readUrl() {
  const q = new URLSearchParams(location.search);
  const limit = Math.min(500, Math.max(1, parseInt(q.get("limit"), 10) || DEFAULT_LIMIT));
  const offset = Math.max(0, parseInt(q.get("offset"), 10) || 0);
  const filter = [...q].filter(([k]) => !RESERVED.includes(k));
  return { node: q.get("node"), filter, offset, limit };
}

function listUrl({ filter = [], offset = 0, limit = DEFAULT_LIMIT }) {
  const q = new URLSearchParams(filter);
  if (offset > 0) q.set("offset", offset);
  if (limit !== DEFAULT_LIMIT) q.set("limit", limit);
  const text = q.toString();
  return `/viewer${text ? `?${text}` : ""}`;
}

function go(url) {
  if (url === location.pathname + location.search) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route(true);
}

// -- live updates shared by both views ---------------------------------------------

const main = frame("viewer");
const stream = follow("node");
let view = null; // {event(data, early)} of the view on screen
let generation = 0; // bumped by each route(); stale async work checks it
let held = []; // events that came while a view was loading
let heldOverflow = false;

const badgesOf = (id) => main.querySelectorAll(`.badge[data-node="${CSS.escape(id)}"]`);
function badge(node) {
  const el = statusBadge(node);
  el.dataset.node = node.id;
  return el;
}
// Recolours every badge of this node on screen; true when there was one.
function paint(node) {
  const found = badgesOf(node.id);
  for (const el of found) {
    if (el.dataset.state !== (node.state || "") || el.dataset.result !== (node.result || "")) updateBadge(el, node);
  }
  return found.length > 0;
}

function onEvent(event) {
  const d = event.data;
  // Anyone may /publish on the node channel: only node events count.
  if (!d || typeof d !== "object" || !isId(d.id) || !d.op) return;
  if (!view) {
    if (held.length < HELD_MAX) held.push(d); else heldOverflow = true;
    return;
  }
  view.event(d, false);
}

// The view is drawn: hand it what came meanwhile, as early events (the view
// may have read an older or newer state than these carry, so it re-reads).
function ready(v, gen) {
  if (gen !== generation) return;
  view = v;
  if (focusHeading) main.querySelector("h1")?.focus();
  focusHeading = false;
  // One per node: created if it was, a hierarchy write if any was.
  const byId = new Map();
  for (const d of held) {
    const seen = byId.get(d.id);
    byId.set(d.id, seen ? { ...seen, is_hierarchy: seen.is_hierarchy || d.is_hierarchy } : d);
  }
  held = [];
  for (const d of byId.values()) v.event(d, true);
  if (heldOverflow) {
    heldOverflow = false;
    v.stale("Many changes arrived while this view loaded");
  }
}

// Asks the server which of the new node ids match `query` (the server's own
// matching, so any filter works), a batch at a time: one request in flight,
// a bounded backlog. `apply(nodes)` gets the matching nodes.
function checker(query, apply, overflow, gen) {
  const pending = new Set();
  let timer = null;
  let busy = false;
  let failed = false;
  const flush = async () => {
    timer = null;
    if (busy || gen !== generation) return;
    busy = true;
    const ids = [...pending].slice(0, CHECK_BATCH);
    ids.forEach((id) => pending.delete(id));
    try {
      const page = await get("/nodes", { ...query, id__in: ids.join(","), limit: ids.length });
      if (gen === generation) apply(page.items);
      failed = false;
    } catch (err) {
      if (!failed) notify(`Could not check new nodes: ${describeError(err)}`, "error");
      failed = true;
    } finally {
      busy = false;
      if (pending.size && gen === generation) timer = setTimeout(flush, 300);
    }
  };
  return (id) => {
    if (pending.size >= PENDING_MAX) { overflow(); return; }
    pending.add(id);
    if (!timer && !busy) timer = setTimeout(flush, 250);
  };
}

// A "things changed — refresh" note, shown once in `box`.
function staleNote(box, text) {
  if (box.querySelector(".stale")) return;
  box.append(h("p", { class: "stale" }, `${text}. `,
    h("button", { type: "button", class: "secondary", onclick: () => route(false) }, "Refresh")));
}

// -- the list view -----------------------------------------------------------------

function fieldList() {
  return h("datalist", { id: "viewer-fields" }, FIELDS.map((f) => h("option", { value: f })),
    Object.entries(SUGGEST).map(([f, values]) =>
      h("datalist", { id: `viewer-values-${f}` }, values.map((v) => h("option", { value: v })))));
}

function listView({ filter, offset, limit }, gen) {
  document.title = "Viewer — KernelCI";
  const rowsBox = h("div", { class: "conditions" });
  const raw = h("input", {
    id: "raw-query", name: "q", type: "text", spellcheck: "false", autocomplete: "off",
    value: formatRaw(filter), placeholder: "kind=checkout state=done result__ne=pass",
    "aria-describedby": "query-help query-error",
  });
  const error = h("p", { id: "query-error", class: "field-error", role: "alert" });
  const sizes = h("select", { id: "page-size", name: "limit" },
    [...new Set([...PAGE_SIZES, limit])].sort((a, b) => a - b)
      .map((n) => h("option", { value: n, selected: n === limit }, n)));

  const showError = (text) => {
    error.textContent = text || "";
    if (text) raw.setAttribute("aria-invalid", "true"); else raw.removeAttribute("aria-invalid");
  };
  const rowPairs = () => [...rowsBox.querySelectorAll(".cond")].map((row) => {
    const field = row.querySelector(".c-field").value.trim();
    const op = row.querySelector(".c-op").value;
    const value = row.querySelector(".c-value").value;
    return field && value !== "" ? [op ? `${field}__${op}` : field, value] : null;
  }).filter(Boolean);
  const syncRaw = () => { raw.value = formatRaw(rowPairs()); showError(""); };
  const condRow = (field = "", op = "", value = "") => {
    const valueInput = h("input", {
      class: "c-value", "aria-label": "Value", placeholder: "value", value, spellcheck: "false",
      autocomplete: "off", list: SUGGEST[field] ? `viewer-values-${field}` : null,
    });
    const fieldInput = h("input", {
      class: "c-field", "aria-label": "Field", placeholder: "field", value: field, list: "viewer-fields",
      spellcheck: "false", autocomplete: "off",
      oninput: () => {
        const f = fieldInput.value.trim();
        if (SUGGEST[f]) valueInput.setAttribute("list", `viewer-values-${f}`); else valueInput.removeAttribute("list");
      },
    });
    const row = h("div", { class: "cond", role: "group", "aria-label": "Condition" },
      fieldInput,
      h("select", { class: "c-op", "aria-label": "Operator" },
        OPS.map(([v, text]) => h("option", { value: v, selected: v === op }, text))),
      valueInput,
      h("button", {
        type: "button", class: "secondary c-remove", "aria-label": "Remove condition", title: "Remove",
        onclick: () => { row.remove(); syncRaw(); },
      }, "×"));
    return row;
  };
  const drawRows = (pairs) => {
    fill(rowsBox, pairs.map(([k, v]) => { const { field, op } = splitKey(k); return condRow(field, op, v); }));
    if (!pairs.length) rowsBox.append(condRow("kind"));
  };
  drawRows(filter);
  rowsBox.addEventListener("input", syncRaw);
  rowsBox.addEventListener("change", syncRaw);
  raw.addEventListener("input", () => {
    try { drawRows(parseRaw(raw.value)); showError(""); } catch (err) { showError(err.message); }
  });

  const form = h("form", { id: "filter-form", class: "panel filter", role: "search" },
    h("fieldset", { id: "builder" }, h("legend", null, "Conditions"), rowsBox,
      h("button", {
        type: "button", id: "add-cond", class: "secondary",
        onclick: () => { const row = condRow(); rowsBox.append(row); row.querySelector("input").focus(); },
      }, "+ Condition")),
    h("label", { class: "raw" }, "Query", raw),
    h("p", { id: "query-help", class: "muted help" },
      "Separate conditions by spaces or &: kind=checkout result__ne=pass (or result!=pass); ",
      "__gt __gte __lt __lte (> >= < <=), __re (~ regex), __in __nin (a,b). Quote values with spaces."),
    error,
    h("div", { class: "row" },
      h("button", { type: "submit", id: "apply" }, "Apply"),
      h("button", { type: "button", id: "clear", class: "secondary", onclick: () => go(listUrl({ limit })) }, "Clear"),
      h("label", { class: "inline" }, "Per page", sizes)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    let pairs;
    try { pairs = parseRaw(raw.value); } catch (err) { showError(err.message); raw.focus(); return; }
    go(listUrl({ filter: pairs, limit: Number(sizes.value) }));
  });
  sizes.addEventListener("change", () => go(listUrl({ filter, offset, limit: Number(sizes.value) })));

  const status = h("div", { id: "list-status", class: "row", role: "status" }, "Loading…");
  const live = h("div", { id: "list-live", "aria-live": "polite" });
  const tbody = h("tbody");
  const table = h("div", { class: "table-wrap" },
    h("table", { id: "nodes" },
      h("caption", { class: "muted" }, "Newest first"),
      h("thead", null, h("tr", null, ["Name", "Kind", "Status", "Created", "Owner", "Node"].map((t, i) =>
        h("th", { scope: "col", class: i >= 4 ? "hide-narrow" : null }, t)))),
      tbody));
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  fill(main, fieldList(), h("h1", { tabindex: "-1" }, "Nodes"), form, status, live, table, pager);

  const row = (node, fresh) => h("tr", { dataset: { id: node.id }, class: fresh ? "new" : null },
    h("td", null, nodeLink(node.id, node.name || node.id)),
    h("td", null, node.kind),
    h("td", null, badge(node)),
    h("td", { title: ago(node.created), class: "when" }, ...when(node.created).split(" ").map((part) => h("span", null, part, " "))),
    h("td", { class: "hide-narrow" }, node.owner || ""),
    h("td", { class: "hide-narrow" }, h("code", { title: node.id }, node.id.slice(-8))));

  const query = Object.fromEntries(filter); // the API lets the last repeat win too
  let total = 0;
  let newer = 0; // matching nodes created while a later page is shown
  const drawPager = (shown) => {
    const next = offset + shown;
    fill(pager,
      h("button", { type: "button", id: "prev", class: "secondary", disabled: offset === 0,
        onclick: () => go(listUrl({ filter, offset: Math.max(0, offset - limit), limit })) }, "‹ Newer"),
      h("span", { class: "muted" }, shown ? `${offset + 1}–${offset + shown} of ${total}` : `0 of ${total}`),
      h("button", { type: "button", id: "next", class: "secondary", disabled: next >= total,
        onclick: () => go(listUrl({ filter, offset: next, limit })) }, "Older ›"));
  };
  const drawStatus = () => fill(status,
    h("span", { id: "total" }, `${total} node${total === 1 ? "" : "s"}`),
    filter.length ? h("span", { class: "muted" }, "match this filter") : null,
    newer ? h("button", { type: "button", id: "show-newer", class: "secondary",
      onclick: () => go(listUrl({ filter, limit })) }, `${newer} new — show newest`) : null);

  // A node id the stream announced: is it new here and does it match?
  // Plain equality on fields the event carries settles it without asking.
  const maybe = (d) => {
    for (const [key, value] of filter) {
      if (["kind", "name", "group", "owner"].includes(key) && !/^(null|true|false)$/i.test(value) &&
          d[key] !== value) return false;
    }
    return true;
  };
  let newest = ""; // the id of the newest node read: only newer ones go on top
  const addNodes = (nodes) => {
    const fresh = nodes.filter((n) => n.id > newest && !tbody.querySelector(`tr[data-id="${CSS.escape(n.id)}"]`))
      .sort((a, b) => (a.id < b.id ? 1 : -1));
    if (!fresh.length) return;
    total += fresh.length;
    if (offset === 0) {
      tbody.querySelector(".empty")?.remove();
      tbody.prepend(...fresh.map((n) => row(n, true)));
      while (tbody.rows.length > limit + LIVE_ROWS_MAX) tbody.lastElementChild.remove();
    } else {
      newer += fresh.length;
    }
    drawStatus();
    drawPager(tbody.querySelectorAll("tr[data-id]").length);
  };
  const staleHere = (text) => staleNote(live, text);
  let check = null; // set once the filter is known to be good

  // Early events of rows on screen: re-read those nodes, in batches.
  const reread = checker({}, (nodes) => nodes.forEach(paint), () => staleHere("Too many changes to follow"), gen);
  const v = {
    event(d, early) {
      const shown = badgesOf(d.id).length > 0;
      if (shown) {
        if (early) reread(d.id); else paint(d);
      } else if (d.op === "created" && check && maybe(d) && !(early && offset > 0)) {
        // (An early one may be in the pages already read: only the first
        // page can tell, by id.)
        check(d.id);
      }
      // A hierarchy write creates children without events of their own.
      if (d.is_hierarchy) staleHere("A hierarchy of nodes was written; new ones may be missing");
    },
    stale: staleHere,
  };

  (async () => {
    try {
      total = await get("/count", query);
      const count = Math.max(0, Math.min(limit, total - offset));
      let items = [];
      if (count > 0) {
        // The API answers in id (creation) order: the newest page is the last one.
        const page = await get("/nodes", { ...query, limit: count, offset: total - offset - count });
        items = page.items.reverse();
      }
      if (offset === 0 && items.length) newest = items[0].id;
      if (gen !== generation) return;
      fill(tbody, items.length ? items.map((n) => row(n, false))
        : h("tr", { class: "empty" }, h("td", { colspan: 6, class: "muted" },
          offset > 0 && total > 0 ? "Nothing on this page." : filter.length ? "No nodes match this filter." : "No nodes yet.")));
      drawStatus();
      drawPager(items.length);
      // With an `id__in` condition of its own the filter cannot be combined
      // with ours; such a list is of known nodes anyway.
      if (!("id__in" in query)) check = checker(query, addNodes, () => staleHere("Too many new nodes to follow"), gen);
    } catch (err) {
      if (gen !== generation) return;
      // A bad query (400 or 422): the API's words, next to the box.
      showError(describeError(err));
      fill(status, "The list could not be read.");
      fill(tbody);
    }
    ready(v, gen);
  })();
}

// -- the node view -------------------------------------------------------------------

function isHttp(url) {
  try { return ["http:", "https:"].includes(new URL(url).protocol); } catch { return false; }
}

function fieldValue(key, value) {
  if (value === null || value === undefined) return h("span", { class: "muted" }, "—");
  if (key === "parent") return nodeLink(value);
  if (["created", "updated", "timeout", "holdoff"].includes(key)) {
    return h("span", { title: value }, when(value), " ", h("span", { class: "muted" }, `(${relative(value)})`));
  }
  if (key === "path" && Array.isArray(value)) return h("code", null, value.join(" / "));
  if (typeof value === "object") return h("code", null, JSON.stringify(value));
  return String(value);
}

// "5 min ago", or "in 6 h" for a time still ahead (a timeout, a holdoff).
function relative(ts) {
  const then = Date.parse(`${String(ts).slice(0, 23)}Z`);
  if (!(then > Date.now())) return ago(ts);
  return `in ${ago(new Date(2 * Date.now() - then).toISOString().slice(0, 23)).replace(" ago", "")}`;
}

const isEmpty = (v) => v === null || v === undefined || (typeof v === "object" && Object.keys(v).length === 0);

// What a view that shows no node does with events: nothing.
const IDLE_VIEW = { event() {}, stale() {} };

function nodeView(id, gen) {
  document.title = "Node — Viewer — KernelCI";
  const box = h("div", { id: "node-view" }, h("p", { class: "muted" }, "Loading…"));
  fill(main, box);
  if (!isId(id)) {
    // Never put a text from the URL into an API path: `?node=../pop/x`
    // would be another call, made with the visitor's token.
    fill(box, h("div", { class: "panel not-found", role: "alert" },
      h("h1", { tabindex: "-1" }, "Cannot show this node"),
      h("p", null, `'${id}' is not a valid ObjectId: a node id is 24 hexadecimal characters.`),
      h("p", null, h("a", { href: "/viewer" }, "Back to the list"))));
    ready(IDLE_VIEW, gen);
    return;
  }
  let node = null;
  let headBadge = null;
  let fieldsBox, artifactsBox, dataBox, debugBox, treeBox, treeNote, treeCounts, treePanel, live;
  const tree = new Map(); // id → {li, ul, node} of every node in the tree

  const drawFields = (n) => {
    fill(fieldsBox, h("dl", { class: "kv" }, Object.entries(n)
      .filter(([k]) => !["data", "artifacts", "debug"].includes(k))
      .map(([k, v]) => [h("dt", null, k), h("dd", { dataset: { field: k } }, fieldValue(k, v))])));
    const arts = Object.entries(n.artifacts || {});
    fill(artifactsBox, arts.length ? h("ul", { class: "artifacts" }, arts.map(([name, url]) =>
      h("li", null, isHttp(url)
        ? h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, name)
        : h("span", { class: "not-link" }, name),
      " ", h("span", { class: "url muted" }, String(url)))))
      : h("p", { class: "muted" }, "No artifacts."));
    fill(dataBox, isEmpty(n.data) ? h("p", { class: "muted" }, "No data.")
      : h("pre", { class: "json" }, JSON.stringify(n.data, null, 2)));
    debugBox.hidden = isEmpty(n.debug);
    fill(debugBox, h("h2", null, "Debug"), h("pre", { class: "json" }, JSON.stringify(n.debug, null, 2)));
    if (headBadge) paint(n);
  };

  // Re-reads the node after a change: one request at a time, the last
  // change always read.
  let reading = false;
  let again = false;
  const refresh = async () => {
    if (reading) { again = true; return; }
    reading = true;
    try {
      do {
        again = false;
        const fresh = await get(`/node/${encodeURIComponent(id)}`);
        if (gen !== generation) return;
        if (fresh) { node = fresh; drawFields(fresh); }
      } while (again);
    } catch (err) {
      notify(`Could not re-read the node: ${describeError(err)}`, "error");
    } finally {
      reading = false;
    }
  };

  // -- the tree: children level by level, bounded --
  const countKinds = () => {
    const by = {};
    for (const { node: n } of tree.values()) if (n.id !== id) by[n.kind] = (by[n.kind] || 0) + 1;
    const parts = Object.entries(by).map(([k, c]) => `${c} ${k}${c === 1 ? "" : "s"}`);
    treeCounts.textContent = parts.length ? parts.join(" · ") : "No children.";
    tally();
    treePanel.classList.toggle("empty", !parts.length);
    if (!parts.length) treePanel.parentNode?.append(treePanel);
  };
  // Each branch's summary counts the results below it (seen when closed).
  let tallyFrame = 0;
  const tally = () => {
    cancelAnimationFrame(tallyFrame);
    tallyFrame = requestAnimationFrame(() => {
      for (const { li, ul } of tree.values()) {
        const sum = li?.querySelector(":scope > details > summary > .tally");
        if (!sum) continue;
        const badges = ul.querySelectorAll(".badge");
        const by = {};
        for (const b of badges) by[b.dataset.result || "pending"] = (by[b.dataset.result || "pending"] || 0) + 1;
        fill(sum, badges.length ? [`${badges.length} below: `, Object.entries(by).map(([r, c], i) =>
          [i ? ", " : "", h("span", { class: `count ${r}` }, `${c} ${r}`)])] : "");
      }
    });
  };
  const treeItem = (n, open) => {
    const ul = h("ul");
    const li = h("li", { class: "leaf", dataset: { id: n.id, kind: n.kind } },
      h("details", { open },
        h("summary", null, badge(n), " ", h("span", { class: "kind" }, n.kind), " ", nodeLink(n.id, n.name || n.id),
          " ", h("span", { class: "tally muted" })),
        ul));
    tree.set(n.id, { li, ul, node: n });
    return li;
  };
  const addToTree = (n, open, fresh) => {
    const parent = tree.get(n.parent);
    if (!parent || tree.has(n.id)) return false;
    const li = treeItem(n, open);
    if (fresh) li.classList.add("new");
    parent.ul.append(li);
    parent.li?.classList.remove("leaf");
    return true;
  };
  let treeRun = 0; // bumped by each load: an older load stops at its next await
  const loadTree = async () => {
    const run = ++treeRun;
    tree.clear();
    const rootUl = h("ul", { class: "tree", id: "tree" });
    tree.set(id, { li: null, ul: rootUl, node });
    fill(treeBox, rootUl);
    fill(treeNote);
    treeCounts.textContent = "Loading…";
    let level = [id];
    for (let depth = 1; depth <= TREE_DEPTH_MAX && level.length; depth += 1) {
      const next = [];
      let more = 0;
      for (let i = 0; i < level.length && next.length < TREE_LEVEL_MAX; i += PARENTS_PER_CALL) {
        const parents = level.slice(i, i + PARENTS_PER_CALL);
        const page = await get("/nodes", {
          ...(parents.length === 1 ? { parent: parents[0] } : { parent__in: parents.join(",") }),
          limit: TREE_LEVEL_MAX - next.length,
        });
        if (gen !== generation || run !== treeRun) return;
        next.push(...page.items);
        more += page.total - page.items.length;
        if (i + PARENTS_PER_CALL < level.length && next.length >= TREE_LEVEL_MAX) more += 1;
      }
      // Open the first levels; deeper ones wait for a click when the tree is big.
      const open = depth <= 2 || tree.size + next.length <= 60;
      for (const n of next) addToTree(n, open, false);
      if (more > 0) {
        treeNote.append(h("p", { class: "more" },
          `Level ${depth}: the first ${next.length} nodes are shown; there are more. `,
          depth === 1 ? h("a", { href: listUrl({ filter: [["parent", id]] }) }, "All children as a list") : null));
      }
      level = next.map((n) => n.id);
      if (depth === TREE_DEPTH_MAX && level.length) {
        treeNote.append(h("p", { class: "more" }, `Only the first ${TREE_DEPTH_MAX} levels are shown.`));
      }
    }
    countKinds();
  };
  let treeTimer = null;
  const reloadTree = () => {
    clearTimeout(treeTimer);
    treeTimer = setTimeout(() => loadTree().catch((err) =>
      notify(`Could not read the tree: ${describeError(err)}`, "error")), 300);
  };
  const staleHere = (text) => staleNote(live, text);
  const check = checker({}, (nodes) => {
    // Parents first, so a new child of a new child finds its place.
    let grew = false;
    for (const n of nodes.sort((a, b) => (a.id < b.id ? -1 : 1))) {
      if (addToTree(n, true, true)) grew = true;
      else paint(n); // in the tree already, or an ancestor
    }
    if (grew) countKinds(); else tally();
  }, () => staleHere("Too many new nodes to follow"), gen);

  const v = {
    event(d, early) {
      if (d.id === id) {
        if (!early) paint(d);
        refresh();
        if (d.is_hierarchy) reloadTree();
        return;
      }
      if (d.is_hierarchy && tree.has(d.id)) reloadTree();
      // Only a node whose path runs through this one can join its tree.
      const under = Array.isArray(d.path) && node && Array.isArray(node.path)
        && node.path.every((name, i) => d.path[i] === name);
      if (!early && d.op === "created" && !under) return;
      if (early || !badgesOf(d.id).length) {
        // Re-read (early) or new: `check` paints the known ones and places
        // a new one by its parent.
        if (early || d.op === "created") check(d.id);
      } else {
        paint(d);
        tally();
      }
    },
    stale: staleHere,
  };

  (async () => {
    try {
      node = await get(`/node/${encodeURIComponent(id)}`);
    } catch (err) {
      if (gen !== generation) return;
      fill(box, h("div", { class: "panel not-found", role: "alert" },
        h("h1", { tabindex: "-1" }, "Cannot show this node"),
        h("p", null, describeError(err)),
        h("p", null, h("a", { href: "/viewer" }, "Back to the list"))));
      ready(IDLE_VIEW, gen);
      return;
    }
    if (gen !== generation) return;
    if (!node) {
      fill(box, h("div", { class: "panel not-found", role: "alert" },
        h("h1", { tabindex: "-1" }, "Node not found"),
        h("p", null, "There is no node with the id ", h("code", null, id), "."),
        h("p", null, h("a", { href: "/viewer" }, "Back to the list"))));
      ready(IDLE_VIEW, gen);
      return;
    }
    document.title = `${node.name} — Viewer — KernelCI`;
    const chain = h("ol", { id: "ancestors" });
    headBadge = badge(node);
    fieldsBox = h("div", { id: "fields" });
    artifactsBox = h("div", { id: "artifacts" });
    dataBox = h("div", { id: "data" });
    debugBox = h("section", { class: "panel", id: "debug" });
    treeBox = h("div");
    treeNote = h("div", { id: "tree-note" });
    treeCounts = h("span", { id: "tree-counts", class: "muted" });
    live = h("div", { "aria-live": "polite" });
    const setOpen = (open) => treeBox.querySelectorAll("details").forEach((d) => { d.open = open; });
    // The tree comes first; a node without children gets it at the end.
    treePanel = h("section", { class: "panel", id: "tree-panel" },
      h("div", { class: "row tree-head" }, h("h2", null, "Tree"), treeCounts,
        h("button", { type: "button", class: "secondary", onclick: () => setOpen(true) }, "Expand all"),
        h("button", { type: "button", class: "secondary", onclick: () => setOpen(false) }, "Collapse all")),
      treeNote, treeBox);
    fill(box,
      h("nav", { class: "crumbs", "aria-label": "Ancestors" }, h("a", { href: "/viewer" }, "Nodes"), chain),
      h("h1", { tabindex: "-1" }, headBadge, " ", node.name),
      h("p", { class: "muted" }, node.kind, " · ", h("code", null, node.id), " · ",
        h("a", { href: `/latest/node/${node.id}` }, "JSON"), " · ",
        h("a", { href: listUrl({ filter: [["parent", node.id]] }) }, "children as a list")),
      live,
      treePanel,
      h("div", { class: "node-grid" },
        h("section", { class: "panel" }, h("h2", null, "Fields"), fieldsBox),
        h("section", { class: "panel" }, h("h2", null, "Artifacts"), artifactsBox)),
      h("section", { class: "panel" }, h("h2", null, "Data"), dataBox),
      debugBox);
    drawFields(node);
    ready(v, gen);
    // Ancestors: walk `parent` up to the root (bounded), nearest last.
    (async () => {
      const seen = new Set([node.id]);
      let parent = node.parent;
      const up = [];
      while (isId(parent) && !seen.has(parent) && up.length < CHAIN_MAX) {
        seen.add(parent);
        const p = await get(`/node/${encodeURIComponent(parent)}`);
        if (gen !== generation) return;
        if (!p) { up.push(h("li", { class: "muted" }, `missing ${parent}`)); break; }
        up.push(h("li", null, nodeLink(p.id, p.name || p.id), " ", badge(p)));
        parent = p.parent;
      }
      if (isId(parent) && up.length >= CHAIN_MAX) up.push(h("li", { class: "muted" }, "…"));
      fill(chain, up.reverse());
    })().catch((err) => notify(`Could not read the ancestors: ${describeError(err)}`, "error"));
    loadTree().catch((err) => {
      if (gen === generation) fill(treeNote, h("p", { class: "field-error" }, `Could not read the tree: ${describeError(err)}`));
    });
  })();
}

// -- routing ---------------------------------------------------------------------------

let lastKind = null;
let focusHeading = false;
function route(moved = false) {
  generation += 1;
  view = null; // events wait in `held` until the new view is drawn
  const state = readUrl();
  const kind = state.node ? "node" : "list";
  if (kind === "node") nodeView(state.node.trim().toLowerCase(), generation);
  else listView(state, generation);
  // After a move to another kind of view, the keyboard focus goes to its
  // heading (a new filter keeps it in the form).
  focusHeading = moved && kind !== lastKind;
  lastKind = kind;
}

// Links to other viewer pages move inside the page (no reload, the stream stays).
document.addEventListener("click", (event) => {
  const a = event.target.closest?.("a[href]");
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
      event.shiftKey || event.altKey || a.target) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname !== "/viewer") return;
  event.preventDefault();
  go(url.pathname + url.search);
});
window.addEventListener("popstate", () => route(false));

stream.listen(onEvent);
// Read after the stream is open, so nothing between the read and the first
// event is lost; a stream that cannot open must not keep the page blank.
Promise.race([stream.ready, new Promise((resolve) => setTimeout(resolve, 3000))]).then(() => route(false));
