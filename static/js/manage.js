// The manage page (API.md 18.6): submit a node from a JSON editor, change the
// state and result of an existing node, and, for administrators, manage
// users, user groups and invites. Everything needs a login (API.md 2).

import {
  ApiError, call, describeError, fill, follow, frame, h, nodeLink, notify,
  onSession, session, statusBadge, updateBadge, when,
} from "./console.js";

const PAGE_SIZE = 20;
const STATES = ["running", "available", "closing", "done"];
const RESULTS = ["none", "pass", "fail", "incomplete", "skip"];
// The transition map of API.md 8 (same state always allowed).
const NEXT = {
  running: STATES,
  available: ["available", "closing", "done"],
  closing: ["closing", "done"],
  done: ["done"],
};

// -- node templates (API.md 6.2): minimal bodies that the server accepts --------

const REVISION = {
  tree: "mainline",
  url: "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git",
  branch: "master",
  commit: "0123456789abcdef0123456789abcdef01234567",
  describe: "v6.12",
};
const TEMPLATES = {
  checkout: { kind: "checkout", name: "checkout", path: ["checkout"],
    data: { kernel_revision: REVISION } },
  kbuild: { kind: "kbuild", name: "kbuild-gcc-12-x86", path: ["checkout", "kbuild-gcc-12-x86"],
    data: { kernel_revision: REVISION, arch: "x86_64", defconfig: "x86_64_defconfig", compiler: "gcc-12" } },
  job: { kind: "job", name: "baseline-x86", path: ["checkout", "kbuild-gcc-12-x86", "baseline-x86"],
    data: { kernel_revision: REVISION, platform: "qemu-x86", runtime: "lava-collabora", arch: "x86_64" } },
  test: { kind: "test", name: "baseline.login", path: ["checkout", "kbuild-gcc-12-x86", "baseline-x86", "login"],
    data: { kernel_revision: REVISION, platform: "qemu-x86", runtime: "lava-collabora" } },
  regression: { kind: "regression", name: "baseline.login", path: ["checkout", "regression", "baseline.login"],
    data: { platform: "qemu-x86", arch: "x86_64", error_msg: "login prompt not found" } },
  process: { kind: "process", name: "tarball", path: ["checkout", "tarball"], data: {} },
};
const templateText = (kind) => JSON.stringify(TEMPLATES[kind], null, 2);

// -- what the page remembers between renders -----------------------------------

const main = frame("manage");
const params = new URLSearchParams(location.search);
// The node being edited: {node, badge, dirty, draw} once loaded.
let editing = null;
let editId = params.get("node") || "";
let loads = 0; // the latest loadForEdit wins over slower earlier ones
let usersOffset = 0;
let groupsOffset = 0;

// -- errors next to the fields -------------------------------------------------

// The problems of a failed call as [{field, msg}]: the 422 items (loc without
// its "body" head and upstream's union branch names) or a 400 text, whose
// field is read from the kind/data validator's "loc: msg" form or guessed by
// `guess(detail)`. A problem without a field is about the whole request.
function problemsOf(err, guess = () => null) {
  if (!(err instanceof ApiError)) return [{ field: null, msg: describeError(err) }];
  if (Array.isArray(err.detail)) {
    return err.detail.map((item) => {
      const loc = (item.loc || []).filter((p) => !/[[\]]/.test(String(p)));
      if (["body", "query", "path"].includes(loc[0])) loc.shift();
      // A JSON syntax error names a character offset, not a field.
      const field = loc.length === 1 && typeof loc[0] === "number" ? `character ${loc[0]}` : loc.join(".");
      return { field: field || null, msg: item.msg || item.type || "invalid" };
    });
  }
  const text = typeof err.detail === "string" ? err.detail : describeError(err);
  const m = /^Invalid data for kind [^:]*: ([\w.]+): (.*)$/s.exec(text);
  if (m) return [{ field: m[1], msg: m[2] }];
  return [{ field: guess(text), msg: err.status >= 500 || err.status === 401 || err.status === 403 ? `${err.status}: ${text}` : text }];
}

// Shows `problems` in the list `box` (emptied when there are none) and marks
// `inputs` (one element, or name → element) invalid where they are named.
function showProblems(box, problems, inputs) {
  const byName = inputs instanceof Element ? null : inputs || {};
  const all = inputs instanceof Element ? [inputs] : Object.values(byName);
  for (const el of all) el.removeAttribute("aria-invalid");
  fill(box, problems.map(({ field, msg }) =>
    h("li", null, field ? [h("code", null, field), " → "] : null, msg)));
  box.hidden = problems.length === 0;
  if (problems.length) box.scrollIntoView({ block: "nearest" });
  for (const { field } of problems) {
    const target = byName ? byName[String(field).split(".")[0]] : inputs;
    if (target) target.setAttribute("aria-invalid", "true");
  }
}

const problemList = (id, label) =>
  h("ul", { id, class: "problems", "aria-live": "assertive", "aria-label": label, hidden: true });

// A node error text → the top-level field it is about.
function nodeField(text) {
  if (/^Unsupported node kind/.test(text)) return "kind";
  if (/^Parent/.test(text)) return "parent";
  if (/^User group/.test(text)) return "user_groups";
  if (/^Transition not allowed/.test(text)) return "state";
  if (/kernel_revision\.version/.test(text)) return "data.kernel_revision.version";
  return null;
}

// -- the page --------------------------------------------------------------------

function render() {
  const user = session.user();
  if (!user) {
    editing = null;
    fill(main, h("h1", null, "Manage"),
      h("section", { id: "login-needed", class: "panel" },
        h("p", null, "Submitting and editing nodes needs a login: use the form at the top of the page."),
        h("p", { class: "muted" }, "Without one you can still browse everything in the ",
          h("a", { href: "/viewer" }, "viewer"), ".")));
    return;
  }
  const sections = [submitSection(), editSection()];
  if (session.isAdmin()) sections.push(usersSection(), groupsSection(), inviteSection());
  fill(main, h("h1", null, "Manage"), h("div", { class: "manage" }, sections));
}

// -- submit a node ---------------------------------------------------------------

function submitSection() {
  const kind = h("select", { id: "node-kind" },
    Object.keys(TEMPLATES).map((k) => h("option", { value: k }, k)));
  const editor = h("textarea", { id: "node-json", rows: 18, spellcheck: "false",
    "aria-describedby": "submit-errors", autocapitalize: "off" });
  editor.value = templateText(kind.value);
  let template = editor.value;
  // A kind change replaces the text only while it is still a template.
  kind.addEventListener("change", () => {
    if (editor.value.trim() === "" || editor.value === template) useTemplate();
  });
  const useTemplate = () => {
    template = templateText(kind.value);
    editor.value = template;
    showProblems(errors, [], editor);
  };
  // Ctrl+Enter (⌘+Enter) submits from inside the editor; Tab still leaves it.
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
  });
  const errors = problemList("submit-errors", "Problems with the node");
  const result = h("div", { id: "submit-result", "aria-live": "polite" });
  const button = h("button", { type: "submit", id: "submit-node" }, "Submit");

  const form = h("form", { id: "submit-form", novalidate: true },
    h("div", { class: "row" },
      h("label", null, "Kind", kind),
      h("button", { type: "button", class: "secondary", id: "use-template", onclick: useTemplate }, "Use template")),
    h("label", { class: "wide" }, "Node (JSON, API.md 6.1)", editor),
    errors,
    h("div", { class: "row" }, button,
      h("span", { class: "muted" }, "Ctrl+Enter submits. Add \"parent\": \"<id>\" to attach it to an existing node.")),
    result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    fill(result);
    let body;
    try {
      body = JSON.parse(editor.value);
    } catch (err) {
      // Nothing is sent: the text is not JSON.
      showProblems(errors, [{ field: "JSON", msg: err.message }], editor);
      const at = /position (\d+)/.exec(err.message);
      editor.focus();
      if (at) editor.setSelectionRange(Number(at[1]), Number(at[1]) + 1);
      return;
    }
    if (!body || typeof body !== "object" || Array.isArray(body)) {
      showProblems(errors, [{ field: "JSON", msg: "A node is a JSON object ({…})." }], editor);
      return;
    }
    button.disabled = true;
    try {
      const node = await call("POST", "/node", { body });
      showProblems(errors, [], editor);
      drawRecent();
      fill(result, h("p", { class: "created" }, "Created ", h("strong", null, node.name), " ",
        statusBadge(node), " ", nodeLink(node.id), " · ",
        h("a", { href: `?node=${encodeURIComponent(node.id)}`, onclick: (e) => { e.preventDefault(); loadForEdit(node.id); } },
          "edit it below")));
    } catch (err) {
      showProblems(errors, problemsOf(err, nodeField), editor);
    } finally {
      button.disabled = false;
    }
  });
  return h("section", { id: "submit-panel", class: "panel", "aria-labelledby": "submit-title" },
    h("h2", { id: "submit-title" }, "Submit a node"), form);
}

// -- edit state and result ---------------------------------------------------------

function editSection() {
  const id = h("input", { id: "edit-id", name: "node", value: editId, placeholder: "24 hex characters",
    autocomplete: "off", spellcheck: "false", "aria-describedby": "edit-errors", size: 26 });
  const errors = problemList("edit-errors", "Problems with the edit");
  const box = h("div", { id: "edit-node" });
  const load = h("form", { id: "edit-load", class: "row" },
    h("label", null, "Node id", id),
    h("button", { type: "submit", class: "secondary" }, "Load"));
  load.addEventListener("submit", (event) => { event.preventDefault(); loadForEdit(id.value.trim()); });
  const section = h("section", { id: "edit-panel", class: "panel", "aria-labelledby": "edit-title" },
    h("h2", { id: "edit-title" }, "Edit a node's state and result"), load, errors, box,
    h("h3", null, "Your latest nodes"), h("ul", { id: "recent-nodes", class: "recent" }));
  section.parts = { id, errors, box };
  editing = null;
  queueMicrotask(() => { drawRecent(); if (editId) loadForEdit(editId); });
  return section;
}

// Loads node `id` into the edit panel (and into the page's address).
async function loadForEdit(id) {
  const panel = document.getElementById("edit-panel");
  if (!panel) return;
  const { id: input, errors, box } = panel.parts;
  input.value = id;
  editId = id;
  history.replaceState(null, "", id ? `?node=${encodeURIComponent(id)}` : location.pathname);
  if (!id) { showProblems(errors, [{ field: "id", msg: "Enter a node id." }], input); return; }
  const ticket = ++loads;
  try {
    const node = await call("GET", `/node/${encodeURIComponent(id)}`);
    if (ticket !== loads) return;
    if (!node) throw new Error(`No node with id ${id}.`);
    showProblems(errors, [], input);
    drawEditor(box, node, errors);
    panel.scrollIntoView({ block: "nearest" });
  } catch (err) {
    if (ticket !== loads) return;
    editing = null;
    fill(box);
    showProblems(errors, problemsOf(err, () => "id"), input);
  }
}

function drawEditor(box, node, errors) {
  const state = h("select", { id: "edit-state" }, STATES.map((s) => h("option", { value: s }, s)));
  const result = h("select", { id: "edit-result" }, RESULTS.map((r) => h("option", { value: r }, r)));
  const badge = statusBadge(node);
  const save = h("button", { type: "submit", id: "save-node" }, "Save");
  const hint = h("p", { id: "edit-hint", class: "muted" });
  const updated = h("dd", null, when(node.updated));
  const user = session.user() || {};
  const may = mayEdit(user, node);
  editing = { node, badge, dirty: false };
  // Options the state machine forbids from the current state are disabled.
  editing.draw = () => {
    const allowed = NEXT[editing.node.state] || STATES;
    for (const option of state.options) option.disabled = !allowed.includes(option.value);
    fill(hint, editing.node.state === "done" ? "A done node keeps its state; its result can still change."
      : `From ${editing.node.state} it may go to ${allowed.filter((s) => s !== editing.node.state).join(", ")}.`);
    if (!editing.dirty) {
      state.value = editing.node.state;
      result.value = editing.node.result || "none";
    }
  };
  const touched = () => { editing.dirty = true; };
  state.addEventListener("change", touched);
  result.addEventListener("change", touched);
  const form = h("form", { id: "edit-form" },
    h("dl", { class: "kv" },
      h("dt", null, "Node"), h("dd", null, h("strong", null, node.name), " ", nodeLink(node.id)),
      h("dt", null, "Kind"), h("dd", null, node.kind),
      h("dt", null, "Path"), h("dd", null, h("code", null, (node.path || []).join(" / "))),
      h("dt", null, "Now"), h("dd", null, badge),
      h("dt", null, "Owner"), h("dd", null, node.owner || "—"),
      h("dt", null, "Updated"), updated),
    may ? null : h("p", { class: "field-error" },
      "You may not be allowed to edit this node (only its owner, administrators and its groups may; API.md 2.3)."),
    h("div", { class: "row" },
      h("label", null, "State", state),
      h("label", null, "Result", result),
      save),
    hint);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    const body = { state: state.value, result: result.value === "none" ? null : result.value };
    try {
      // PATCH changes only these two fields (API.md 6.3).
      const fresh = await call("PATCH", `/node/${encodeURIComponent(node.id)}`, { body });
      showProblems(errors, [], { state, result });
      editing.node = fresh;
      editing.dirty = false;
      updateBadge(badge, fresh);
      updated.textContent = when(fresh.updated);
      editing.draw();
      notify(`Saved ${fresh.name}: ${fresh.state}${fresh.result ? ` · ${fresh.result}` : ""}.`);
    } catch (err) {
      showProblems(errors, problemsOf(err, nodeField), { state, result });
    } finally {
      save.disabled = false;
    }
  });
  fill(box, form);
  editing.draw();
}

// The rules of API.md 2.3 as far as the page knows the user's groups (the
// server decides; this only warns).
function mayEdit(user, node) {
  const groups = (user.groups || []).map((g) => g.name);
  const runtime = node.data && typeof node.data.runtime === "string" ? node.data.runtime : "";
  return !!(user.is_superuser || node.owner === user.username || groups.includes("node:edit:any")
    || groups.some((g) => (node.user_groups || []).includes(g))
    || (runtime && groups.some((g) => g === `runtime:${runtime}:node-editor` || g === `runtime:${runtime}:node-admin`)));
}

// -- the user's latest nodes, to pick one to edit ------------------------------------

const RECENT = 8;
let recentTimer = null;

async function drawRecent() {
  const list = document.getElementById("recent-nodes");
  const owner = (session.user() || {}).username;
  if (!list || !owner) return;
  try {
    // Nodes come in creation order: the last RECENT of the user's, newest first.
    const total = await call("GET", "/count", { params: { owner } });
    const page = await call("GET", "/nodes", { params: { owner, limit: RECENT, offset: Math.max(0, total - RECENT) } });
    fill(list, page.items.length ? page.items.reverse().map((node) => h("li", { dataset: { node: node.id } },
      h("button", { type: "button", class: "secondary", "aria-label": `Edit ${node.name}`,
        onclick: () => loadForEdit(node.id) }, "Edit"),
      statusBadge(node), h("span", { class: "name" }, node.name), h("span", { class: "muted" }, node.kind)))
      : h("li", { class: "muted" }, "You have not submitted any nodes yet"));
  } catch (err) {
    fill(list, h("li", { class: "field-error" }, `Your nodes: ${describeError(err)}`));
  }
}

// Someone (or the timer) changed a node: the lists and the editor follow.
function onNodeEvent(event, early) {
  const data = event.data || {};
  if (data.owner && data.owner === (session.user() || {}).username) {
    const badge = document.querySelector(`#recent-nodes li[data-node="${CSS.escape(String(data.id))}"] .badge`);
    if (badge && !early && data.op === "updated") updateBadge(badge, data);
    else { clearTimeout(recentTimer); recentTimer = setTimeout(drawRecent, 300); }
  }
  if (!editing || data.id !== editing.node.id) return;
  if (early) { loadForEdit(editing.node.id); return; }
  // an event naming another owner is not about this node (isNodeEvent)
  if ((data.owner || "") !== (editing.node.owner || "")) return;
  if (data.state === editing.node.state && data.result === editing.node.result) return;
  editing.node = { ...editing.node, state: data.state, result: data.result };
  updateBadge(editing.badge, editing.node);
  editing.draw();
}

// -- administrators: users ---------------------------------------------------------

function usersSection() {
  const body = h("tbody", { id: "users-body" });
  const pager = h("div", { class: "pager" });
  const section = h("section", { id: "admin-users", class: "panel admin", "aria-labelledby": "users-title" },
    h("h2", { id: "users-title" }, "Users"),
    h("div", { class: "table-wrap" }, h("table", null,
      h("thead", null, h("tr", null, ["User", "E-mail", "Groups", "Active", "Admin", "Verified", ""].map(
        (t, i) => h("th", { class: i === 1 || i === 2 || i === 5 ? "hide-narrow" : null, scope: "col" }, t)))),
      body)),
    pager);
  section.reload = () => drawUsers(body, pager);
  section.reload();
  return section;
}

async function drawUsers(body, pager) {
  let page;
  try {
    page = await call("GET", "/users", { params: { limit: PAGE_SIZE, offset: usersOffset } });
  } catch (err) {
    fill(body, h("tr", null, h("td", { colspan: 7, class: "field-error" }, `Users: ${describeError(err)}`)));
    return;
  }
  if (page.items.length === 0 && usersOffset > 0) { usersOffset = 0; drawUsers(body, pager); return; }
  const me = session.user() || {};
  fill(body, page.items.length ? page.items.map((u) => userRow(u, me)) :
    h("tr", null, h("td", { colspan: 7, class: "muted" }, "No users yet")));
  drawPager(pager, page, (offset) => { usersOffset = offset; drawUsers(body, pager); }, "users");
}

function userRow(u, me) {
  const self = u.id === me.id;
  const actions = h("td", { class: "actions" });
  // A yes/no cell that flips the flag `field` (PATCH /user/{id}, admin).
  const flag = (field, cls, label) => h("button", {
    type: "button", class: `secondary ${cls}`, disabled: self,
    title: self ? "This is you" : `Switch ${u[field] ? "off" : "on"}`,
    "aria-pressed": String(u[field]), "aria-label": `${label}: ${u.username}`,
    onclick: () => patchUser(u, { [field]: !u[field] }),
  }, u[field] ? "yes" : "no");
  // Deleting asks in place (a real button, no modal dialog).
  const ask = () => fill(actions, h("span", null, `Delete ${u.username}?`), " ",
    h("button", { type: "button", class: "danger confirm-delete", onclick: () => deleteUser(u) }, "Yes, delete"), " ",
    h("button", { type: "button", class: "secondary", onclick: () => fill(actions, del) }, "Cancel"));
  const del = h("button", { type: "button", class: "secondary delete-user", disabled: self,
    "aria-label": `Delete ${u.username}`, onclick: ask }, "Delete");
  fill(actions, del);
  return h("tr", { dataset: { user: u.username } },
    h("td", null, h("strong", null, u.username)),
    h("td", { class: "hide-narrow" }, u.email),
    h("td", { class: "hide-narrow" }, (u.groups || []).map((g) => g.name).join(", ") || "—"),
    h("td", null, flag("is_active", "toggle-active", "Active")),
    h("td", null, flag("is_superuser", "toggle-admin", "Administrator")),
    h("td", { class: "hide-narrow" }, u.is_verified ? "yes" : "no"),
    actions);
}

async function patchUser(u, body) {
  try {
    await call("PATCH", `/user/${encodeURIComponent(u.id)}`, { body });
    notify(`Updated ${u.username}.`);
  } catch (err) {
    notify(`Updating ${u.username} failed: ${describeError(err)}`, "error");
  }
  reloadAdmin("admin-users");
}

async function deleteUser(u) {
  try {
    await call("DELETE", `/user/${encodeURIComponent(u.id)}`);
    notify(`Deleted ${u.username}.`);
  } catch (err) {
    notify(`Deleting ${u.username} failed: ${describeError(err)}`, "error");
  }
  reloadAdmin("admin-users");
}

function reloadAdmin(id) {
  const section = document.getElementById(id);
  if (section && section.reload) section.reload();
}

function drawPager(pager, page, go, what) {
  const last = Math.min(page.offset + page.items.length, page.total);
  fill(pager,
    h("button", { type: "button", class: "secondary", disabled: page.offset === 0,
      onclick: () => go(Math.max(0, page.offset - page.limit)) }, "Previous"),
    h("span", { class: "muted" }, page.total ? `${page.offset + 1}–${last} of ${page.total} ${what}` : `0 ${what}`),
    h("button", { type: "button", class: "secondary", disabled: last >= page.total,
      onclick: () => go(page.offset + page.limit) }, "Next"));
}

// -- administrators: groups --------------------------------------------------------

function groupsSection() {
  const name = h("input", { id: "group-name", name: "name", required: true, autocomplete: "off",
    placeholder: "e.g. runtime:lab-a:node-editor", "aria-describedby": "group-errors" });
  const errors = problemList("group-errors", "Problems with the group");
  const list = h("ul", { id: "groups-list", class: "groups" });
  const pager = h("div", { class: "pager" });
  const form = h("form", { id: "group-form", class: "row", novalidate: true },
    h("label", null, "New group", name), h("button", { type: "submit" }, "Create group"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const group = await call("POST", "/user-groups", { body: { name: name.value.trim() } });
      showProblems(errors, [], { name });
      name.value = "";
      notify(`Created group ${group.name}.`);
      section.reload();
    } catch (err) {
      showProblems(errors, problemsOf(err, () => "name"), { name });
    }
  });
  const section = h("section", { id: "admin-groups", class: "panel admin", "aria-labelledby": "groups-title" },
    h("h2", { id: "groups-title" }, "User groups"), form, errors, list, pager);
  section.reload = () => drawGroups(list, pager);
  section.reload();
  return section;
}

async function drawGroups(list, pager) {
  let page;
  try {
    page = await call("GET", "/user-groups", { params: { limit: PAGE_SIZE, offset: groupsOffset } });
  } catch (err) {
    fill(list, h("li", { class: "field-error" }, `Groups: ${describeError(err)}`));
    return;
  }
  if (page.items.length === 0 && groupsOffset > 0) { groupsOffset = 0; drawGroups(list, pager); return; }
  fill(list, page.items.length ? page.items.map(groupItem) : h("li", { class: "muted" }, "No groups yet"));
  drawPager(pager, page, (offset) => { groupsOffset = offset; drawGroups(list, pager); }, "groups");
}

function groupItem(g) {
  const item = h("li", { dataset: { group: g.name } });
  const plain = () => fill(item, h("code", null, g.name), " ",
    h("button", { type: "button", class: "secondary delete-group", "aria-label": `Delete group ${g.name}`,
      onclick: () => fill(item, h("span", null, `Delete ${g.name}?`), " ",
        h("button", { type: "button", class: "danger confirm-delete", onclick: () => deleteGroup(g) }, "Yes, delete"), " ",
        h("button", { type: "button", class: "secondary", onclick: plain }, "Cancel")) }, "Delete"));
  plain();
  return item;
}

async function deleteGroup(g) {
  try {
    await call("DELETE", `/user-groups/${encodeURIComponent(g.id)}`);
    notify(`Deleted group ${g.name}.`);
  } catch (err) {
    // 409 when users are still in it (API.md 5).
    notify(`Deleting group ${g.name} failed: ${describeError(err)}`, "error");
  }
  reloadAdmin("admin-groups");
}

// -- administrators: invites -------------------------------------------------------

function inviteSection() {
  const input = (id, attrs) => h("input", { id, "aria-describedby": "invite-errors", autocomplete: "off", ...attrs });
  const fields = {
    username: input("invite-username", { name: "username", required: true }),
    email: input("invite-email", { name: "email", type: "email", required: true }),
    groups: input("invite-groups", { name: "groups", placeholder: "comma-separated names" }),
  };
  const box = (id, label, checked) => h("label", { class: "check" },
    h("input", { id, type: "checkbox", checked }), label);
  const superuser = box("invite-superuser", "Administrator", false);
  const sendEmail = box("invite-send-email", "Send the invite by e-mail", true);
  const returnToken = box("invite-return-token", "Show me the invite link", true);
  const errors = problemList("invite-errors", "Problems with the invite");
  const result = h("div", { id: "invite-result", "aria-live": "polite" });
  const form = h("form", { id: "invite-form", novalidate: true },
    h("div", { class: "row" },
      h("label", null, "Username", fields.username),
      h("label", null, "E-mail", fields.email),
      h("label", null, "Groups", fields.groups)),
    h("div", { class: "row" }, superuser, sendEmail, returnToken),
    errors,
    h("div", { class: "row" }, h("button", { type: "submit", id: "send-invite" }, "Invite"),
      h("span", { class: "muted" }, "Also available as the standalone ", h("a", { href: "/user/invite" }, "invite page"), ".")),
    result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    fill(result);
    const groups = fields.groups.value.split(",").map((g) => g.trim()).filter(Boolean);
    const body = {
      username: fields.username.value.trim(), email: fields.email.value.trim(), groups,
      is_superuser: superuser.firstChild.checked, send_email: sendEmail.firstChild.checked,
      return_token: returnToken.firstChild.checked,
    };
    try {
      const answer = await call("POST", "/user/invite", { body });
      showProblems(errors, [], fields);
      form.reset();
      drawInvite(result, answer);
      result.scrollIntoView({ block: "nearest" });
      reloadAdmin("admin-users");
    } catch (err) {
      showProblems(errors, problemsOf(err, (text) => (/group/i.test(text) ? "groups"
        : /email/i.test(text) ? "email" : /user/i.test(text) ? "username" : null)), fields);
    }
  });
  return h("section", { id: "admin-invite", class: "panel admin", "aria-labelledby": "invite-title" },
    h("h2", { id: "invite-title" }, "Invite a user"), form);
}

function drawInvite(box, answer) {
  const parts = [h("p", null, "Invited ", h("strong", null, answer.user.username), ". ",
    answer.email_sent ? "The invite e-mail was sent." : "No e-mail was sent.")];
  if (answer.invite_url) {
    const url = h("input", { id: "invite-url", readonly: true, value: answer.invite_url, "aria-label": "Invite link" });
    parts.push(h("div", { class: "row invite-link" }, url,
      h("button", { type: "button", class: "secondary", onclick: async () => {
        url.select();
        try { await navigator.clipboard.writeText(answer.invite_url); notify("Invite link copied."); }
        catch { notify("Copy failed: the link is selected, press Ctrl+C.", "error"); }
      } }, "Copy")),
    h("p", { class: "muted" }, "Hand this link to the person: it is valid for 7 days."),
    h("details", null, h("summary", null, "The token alone"), h("code", { id: "invite-token" }, answer.token)));
  } else if (!answer.email_sent) {
    parts.push(h("p", { class: "field-error" }, "Neither an e-mail nor a link: invite again with \"Show me the invite link\"."));
  }
  fill(box, parts);
}

// -- start -------------------------------------------------------------------------

onSession(render);
const live = follow("node");
live.ready.then(() => {
  live.listen(onNodeEvent);
  // A change between the first read and the stream opening would be missed.
  if (editing) loadForEdit(editing.node.id);
});
