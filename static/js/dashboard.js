// The dashboard: the newest checkouts (optionally of one tree/branch) with
// their state and the pass/fail/incomplete counts of their builds and
// tests, and the newest regressions. Kept current by the node event stream:
// new checkouts appear on top, badges change in place, and the counts of a
// checkout are re-read when one of its builds or tests changes.

import {
  frame, h, fill, get, follow, notify, describeError, statusBadge, updateBadge,
  nodeLink, revision, when, ago,
} from "/static/js/console.js";

const PAGE = 25;          // checkouts read at once ("Show older" adds as many)
const MAX_SHOWN = 200;    // never more rows than this
const REGRESSIONS = 10;   // newest regressions listed
const COUNT_EVERY = 1000; // ms: a checkout's counts are re-read at most this often
const KIN_MAX = 5000;     // node id → its checkout's key, remembered for events
const KINDS = [["kbuild", "Builds"], ["test", "Tests"]];
const RESULTS = ["pass", "fail", "incomplete"];

// At most `n` calls in flight, so a page of counts does not crowd out the
// server (and the browser's six connections, one of which is the stream),
// and at most `queued` waiting: past that a call fails at once (a busy lab
// outruns the page; it says so instead of falling ever further behind).
function limiter(n, queued) {
  let active = 0;
  const waiting = [];
  const next = () => { if (waiting.length && active < n) waiting.shift()(); };
  return (fn) => new Promise((resolve, reject) => {
    if (waiting.length >= queued) {
      reject(new Error("too many changes to follow at once; reload the page for exact counts"));
      return;
    }
    waiting.push(async () => {
      active += 1;
      try { resolve(await fn()); } catch (err) { reject(err); } finally { active -= 1; next(); }
    });
    next();
  });
}
const limit = limiter(4, 500);

// One notice for a burst of failures, not one per call.
let lastProblem = 0;
function problem(what, err) {
  if (Date.now() - lastProblem < 10000) return;
  lastProblem = Date.now();
  notify(`${what}: ${describeError(err)}`, "error");
}

// The newest `n` nodes matching `params`, newest first. The API answers in
// id order only (ids grow with time), so the last page is read from the end:
// the first call tells the total, a second one reads the tail if needed.
async function newest(params, n) {
  const first = await get("/nodes", { ...params, limit: n, offset: 0 });
  let items = first.items;
  if (first.total > n) items = (await get("/nodes", { ...params, limit: n, offset: first.total - n })).items;
  return { items: items.reverse(), total: first.total };
}

// -- the page ------------------------------------------------------------------

const main = frame("dashboard");
const select = h("select", { id: "tree-filter", onchange: () => choose(select.value) },
  h("option", { value: "" }, "All trees"));
const summary = h("p", { id: "summary", class: "muted" }, "Loading…");
const tbody = h("tbody", { id: "checkout-rows" });
const empty = h("p", { id: "no-checkouts", class: "empty", hidden: true }, "No checkouts yet");
const more = h("button", { type: "button", class: "secondary", id: "more", hidden: true, onclick: () => older() },
  "Show older");
const regList = h("ul", { id: "regressions", class: "regressions" });
const regEmpty = h("p", { id: "no-regressions", class: "empty", hidden: true }, "No regressions");

fill(main,
  h("h1", null, "Dashboard"),
  h("section", { class: "panel", "aria-labelledby": "checkouts-title" },
    h("div", { class: "row head" },
      h("h2", { id: "checkouts-title" }, "Recent checkouts"),
      h("label", { class: "filter" }, "Tree / branch", select)),
    summary,
    h("div", { class: "table-wrap" },
      h("table", { id: "checkouts" },
        h("thead", null, h("tr", null,
          h("th", null, "Tree / branch"), h("th", null, "Commit"), h("th", null, "Created"),
          h("th", null, "Status"),
          KINDS.map(([kind, title]) => h("th", { title: `${kind} nodes of the checkout's tree (tree id)` },
            title, h("span", { class: "muted" }, " pass / fail / incomplete"))))),
        tbody)),
    empty,
    h("div", { class: "pager" }, more)),
  h("section", { class: "panel", "aria-labelledby": "regressions-title" },
    h("h2", { id: "regressions-title" }, "Regressions"),
    regList, regEmpty));

// -- state ---------------------------------------------------------------------

let filter = { tree: "", branch: "" };
const rows = new Map();    // checkout id → row {node, tr, badge, commit, counts, timer, dirty, last}
const byKey = new Map();   // treeid (or "parent:<id>" without one) → checkout id
const trees = new Map();   // "tree\nbranch" → [tree, branch], for the select (bounded)
const kin = new Map();     // node id → Promise of its key (see keysOf)
const regs = new Map();    // regression id → {li, badge}
let total = 0;             // checkouts matching the filter, as last read
let loading = null;        // the running load; events wait for it
const held = [];           // events received while loading

const apiFilter = () => ({
  kind: "checkout",
  "data.kernel_revision.tree": filter.tree || null,
  "data.kernel_revision.branch": filter.branch || null,
});
const matches = (node) => {
  const rev = revision(node);
  return (!filter.tree || rev.tree === filter.tree) && (!filter.branch || rev.branch === filter.branch);
};
// Which builds and tests belong to a checkout: those of its tree id
// (kernelci sets it on every node of a checkout's tree); without one, its
// direct children.
const keyOf = (node) => (node.treeid ? node.treeid : `parent:${node.id}`);

// -- the tree/branch select ------------------------------------------------------

function addTree(node) {
  const { tree, branch } = revision(node);
  if (!tree || trees.size >= 200) return;
  const key = `${tree}\n${branch}`;
  if (trees.has(key)) return;
  trees.set(key, [tree, branch]);
  drawSelect();
}

function drawSelect() {
  const byTree = new Map();
  for (const [tree, branch] of trees.values()) {
    if (!byTree.has(tree)) byTree.set(tree, new Set());
    if (branch) byTree.get(tree).add(branch);
  }
  const current = JSON.stringify([filter.tree, filter.branch]);
  const option = (tree, branch, text) => {
    const value = JSON.stringify([tree, branch]);
    return h("option", { value, selected: value === current }, text);
  };
  fill(select, h("option", { value: "", selected: !filter.tree }, "All trees"),
    [...byTree.keys()].sort().map((tree) => h("optgroup", { label: tree },
      option(tree, "", `${tree} (all branches)`),
      [...byTree.get(tree)].sort().map((branch) => option(tree, branch, `${tree} / ${branch}`)))));
}

function choose(value) {
  let tree = "", branch = "";
  try { [tree, branch] = value ? JSON.parse(value) : ["", ""]; } catch { /* keep all */ }
  filter = { tree: tree || "", branch: branch || "" };
  const q = new URLSearchParams();
  if (filter.tree) q.set("tree", filter.tree);
  if (filter.branch) q.set("branch", filter.branch);
  history.replaceState(null, "", `${location.pathname}${q.toString() ? `?${q}` : ""}`);
  reload();
}

// -- checkout rows -----------------------------------------------------------------

function countsCell(kind) {
  const spans = Object.fromEntries(RESULTS.map((r) =>
    [r, h("span", { class: `count ${r}`, title: `${kind === "kbuild" ? "builds" : "tests"}: ${r}` }, "…")]));
  const all = h("span", { class: "count all muted" });
  const td = h("td", { class: `counts ${kind}` },
    spans.pass, h("span", { class: "sep" }, " / "), spans.fail, h("span", { class: "sep" }, " / "),
    spans.incomplete, all);
  return { td, spans, all };
}

function commitText(node) {
  const rev = revision(node);
  return rev.describe || rev.commit.slice(0, 12) || "—";
}

function makeRow(node) {
  const rev = revision(node);
  const badge = statusBadge(node);
  const commit = h("code", { title: revision(node).commit }, commitText(node));
  const counts = Object.fromEntries(KINDS.map(([kind]) => [kind, countsCell(kind)]));
  const title = rev.tree ? `${rev.tree} / ${rev.branch || "?"}` : node.name;
  const tr = h("tr", { class: "checkout", dataset: { id: node.id } },
    h("td", { class: "rev", "data-label": "Checkout" }, nodeLink(node.id, title)),
    h("td", { class: "commit", "data-label": "Commit" }, commit),
    h("td", { class: "created", "data-label": "Created", title: when(node.created) }, ago(node.created)),
    h("td", { class: "status", "data-label": "Status" }, badge),
    KINDS.map(([kind, label]) => { counts[kind].td.dataset.label = label; return counts[kind].td; }));
  return { node, tr, badge, commit, counts, timer: null, dirty: false, last: 0 };
}

// Puts a checkout's row in its place (newest id first); re-reads its counts.
function showCheckout(node) {
  if (rows.has(node.id)) return;
  const row = makeRow(node);
  rows.set(node.id, row);
  byKey.set(keyOf(node), node.id);
  const after = [...tbody.children].find((tr) => tr.dataset.id < node.id);
  tbody.insertBefore(row.tr, after || null);
  while (rows.size > MAX_SHOWN) dropRow(tbody.lastElementChild.dataset.id);
  empty.hidden = true;
  addTree(node);
  readCounts(row);
}

function dropRow(id) {
  const row = rows.get(id);
  if (!row) return;
  clearTimeout(row.timer);
  row.tr.remove();
  rows.delete(id);
  byKey.delete(keyOf(row.node));
}

function updateCheckout(node) {
  const row = rows.get(node.id);
  if (!row) return;
  // an event naming another owner is not about this checkout (isNodeEvent)
  if ("op" in node && (node.owner || "") !== (row.node.owner || "")) return;
  row.node = { ...row.node, ...node };
  if (row.badge.dataset.state !== (node.state || "") || row.badge.dataset.result !== (node.result || "")) {
    updateBadge(row.badge, node);
  }
  row.commit.textContent = commitText(row.node);
}

// Reads the pass/fail/incomplete (and all) counts of a checkout's builds
// and tests: eight GET /count calls, each a seek on an index.
async function readCounts(row) {
  const { node } = row;
  const base = node.treeid ? { treeid: node.treeid } : { parent: node.id };
  await Promise.all(KINDS.map(async ([kind]) => {
    const cell = row.counts[kind];
    try {
      const [all, ...each] = await Promise.all([null, ...RESULTS].map((result) =>
        limit(() => get("/count", { ...base, kind, result }))));
      RESULTS.forEach((r, i) => { cell.spans[r].textContent = `${each[i]} ${r}`; cell.spans[r].dataset.n = each[i]; });
      const other = all - each.reduce((a, b) => a + b, 0);
      cell.all.textContent = other > 0 ? ` (${all} in all)` : "";
      cell.all.title = other > 0 ? `${other} running or skipped` : "";
    } catch (err) {
      for (const r of RESULTS) cell.spans[r].textContent = "?";
      problem("Could not count builds and tests", err);
    }
  }));
}

// Re-reads a checkout's counts soon, at most once per COUNT_EVERY.
function recount(row) {
  if (row.timer) { row.dirty = true; return; }
  row.timer = setTimeout(async () => {
    row.dirty = false;
    row.last = Date.now();
    await readCounts(row);
    row.timer = null;
    if (row.dirty && rows.get(row.node.id) === row) recount(row);
  }, Math.max(0, row.last + COUNT_EVERY - Date.now()));
}

// -- loading -----------------------------------------------------------------------

async function load(params) {
  const { items, total: n } = await newest(params, PAGE);
  return { items, n };
}

let loadRun = 0; // bumped by each reload: an older one drops what it read
function reload() {
  const run = ++loadRun;
  for (const id of [...rows.keys()]) dropRow(id);
  summary.textContent = "Loading…";
  more.hidden = true;
  loading = (async () => {
    try {
      const { items, n } = await load(apiFilter());
      if (run !== loadRun) return false;
      total = n;
      items.forEach(showCheckout);
    } catch (err) {
      notify(`Could not read the checkouts: ${describeError(err)}`, "error");
    }
    drawSummary();
    return true;
  })();
  // only the newest reload hands the held events on
  return loading.then((current) => { if (current) release(); });
}

// The next PAGE checkouts older than the oldest one shown.
async function older() {
  const last = tbody.lastElementChild;
  if (!last) return;
  more.disabled = true;
  try {
    const { items } = await load({ ...apiFilter(), id__lt: last.dataset.id });
    items.forEach(showCheckout);
  } catch (err) {
    notify(`Could not read older checkouts: ${describeError(err)}`, "error");
  }
  more.disabled = false;
  drawSummary();
}

function drawSummary() {
  const where = filter.tree ? ` of ${filter.tree}${filter.branch ? ` / ${filter.branch}` : ""}` : "";
  summary.textContent = rows.size ? `The newest ${rows.size} of ${total} checkouts${where}.` : "";
  empty.hidden = rows.size > 0;
  empty.textContent = filter.tree ? `No checkouts${where} yet` : "No checkouts yet";
  more.hidden = rows.size >= total || rows.size >= MAX_SHOWN;
}

// -- regressions -----------------------------------------------------------------------

function showRegression(node, top) {
  if (regs.has(node.id)) return;
  const rev = (node.data && node.data.failed_kernel_revision) || {};
  const badge = statusBadge(node);
  const what = [node.data && node.data.platform, node.data && node.data.arch].filter(Boolean).join(" · ");
  const li = h("li", { dataset: { id: node.id } },
    nodeLink(node.id, node.name), " ", badge,
    h("span", { class: "muted" },
      rev.tree ? ` ${rev.tree} / ${rev.branch || "?"}` : "", what ? ` ${what}` : "",
      node.created ? ` · ${ago(node.created)}` : ""));
  regs.set(node.id, { li, badge });
  if (top) regList.prepend(li); else regList.append(li);
  while (regs.size > REGRESSIONS) {
    const lastLi = regList.lastElementChild;
    regs.delete(lastLi.dataset.id);
    lastLi.remove();
  }
  regEmpty.hidden = true;
}

async function loadRegressions() {
  try {
    const { items } = await newest({ kind: "regression" }, REGRESSIONS);
    items.forEach((node) => showRegression(node, false));
  } catch (err) {
    notify(`Could not read the regressions: ${describeError(err)}`, "error");
  }
  regEmpty.hidden = regs.size > 0;
}

// -- events --------------------------------------------------------------------------

const nodeById = (id) => limit(() => get(`/node/${encodeURIComponent(id)}`));

// Builds and tests whose keys are wanted, read together: one
// `GET /nodes?id__in=` of up to BATCH ids at a time, through the limiter.
const BATCH = 100;
const wanted = new Map(); // id → resolve of its keys, waiting for a batch
let batching = null;
function readBatch() {
  batching = null;
  const ids = [...wanted.keys()].slice(0, BATCH);
  const resolves = ids.map((id) => { const r = wanted.get(id); wanted.delete(id); return r; });
  if (wanted.size) batching = setTimeout(readBatch, 0);
  limit(() => get("/nodes", { id__in: ids.join(","), limit: ids.length }))
    .then((page) => {
      const byId = new Map(page.items.map((n) => [n.id, n]));
      ids.forEach((id, i) => {
        const node = byId.get(id);
        resolves[i](node ? [node.treeid, `parent:${node.parent}`].filter(Boolean) : []);
      });
    })
    .catch((err) => {
      ids.forEach((id, i) => { kin.delete(id); resolves[i]([]); });
      problem("Could not follow a change", err);
    });
}

// The keys (tree id, "parent:<id>") that relate a build or test to a
// checkout. Events do not carry treeid, so the node is read once (in a
// batch with others) and its keys remembered (a bounded map; the oldest
// entries go first). At most KIN_MAX ids wait; past that the page says it
// cannot keep up.
function keysOf(id) {
  let keys = kin.get(id);
  if (!keys) {
    if (wanted.size >= KIN_MAX) {
      problem("Too many changes to follow", new Error("reload the page for exact counts"));
      return Promise.resolve([]);
    }
    keys = new Promise((resolve) => wanted.set(id, resolve));
    kin.set(id, keys);
    if (kin.size > KIN_MAX) kin.delete(kin.keys().next().value);
    if (!batching) batching = setTimeout(readBatch, 200);
  }
  return keys;
}

// Whether the node of an event may belong to a checkout on the page: when
// the event's data names a commit, it must be a shown checkout's commit.
function mayConcern(d) {
  if (!rows.size) return false;
  const commit = revision(d).commit;
  if (!commit) return true;
  for (const row of rows.values()) if (revision(row.node).commit === commit) return true;
  return false;
}

async function onEvent(event, early) {
  const d = event.data;
  if (!d || typeof d !== "object" || typeof d.id !== "string") return;
  if (loading) {
    if (held.length < 1000) held.push(event);
    else problem("Too many changes arrived while loading", new Error("reload the page for exact counts"));
    return;
  }
  try {
    if (d.kind === "checkout") {
      if (rows.has(d.id)) {
        updateCheckout(early ? await nodeById(d.id) || d : d);
      } else if (d.op === "created" && matches(d)) {
        const node = await nodeById(d.id);
        if (node) { total += 1; showCheckout(node); drawSummary(); }
      }
    } else if (d.kind === "regression") {
      const shown = regs.get(d.id);
      if (shown) updateBadge(shown.badge, early ? await nodeById(d.id) || d : d);
      else if (d.op === "created") {
        const node = await nodeById(d.id);
        if (node) showRegression(node, true);
      }
    } else if ((d.kind === "kbuild" || d.kind === "test") && mayConcern(d)) {
      for (const key of await keysOf(d.id)) {
        const row = rows.get(byKey.get(key));
        if (row) recount(row);
      }
    }
  } catch (err) {
    problem("Could not follow a change", err);
  }
}

// Events held during a load are handed over as early ones: the load may
// or may not have seen them.
function release() {
  loading = null;
  for (const event of held.splice(0)) onEvent(event, true);
}

// -- start -----------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
filter = { tree: params.get("tree") || "", branch: params.get("branch") || "" };
if (filter.tree) trees.set(`${filter.tree}\n${filter.branch}`, [filter.tree, filter.branch]);
drawSelect();

// Read once the stream is open (so no change falls between the read and the
// stream); if it cannot open, read anyway after a while (the indicator says so).
const stream = follow("node");
await Promise.race([stream.ready, new Promise((resolve) => setTimeout(resolve, 5000))]);
await Promise.all([reload(), loadRegressions()]);
stream.listen(onEvent);
// "3 min ago" grows old: refresh those words now and then.
setInterval(() => {
  for (const row of rows.values()) row.tr.querySelector("td.created").textContent = ago(row.node.created);
}, 30000);
