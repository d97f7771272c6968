// /analytics: telemetry (API.md 12) for a chosen window — results by lab and
// by device type, infra errors by lab and device type, results over time,
// and the anomalies the API finds. Window and filters live in the URL
// query, so a link shows the same view.

import { frame, h, fill, get, describeError, notify, follow, when, queryString } from "./console.js";
import { stackedBars, columns, RESULTS } from "./chart.js";

// Windows offered and their length in hours. /telemetry/stats takes any
// `since`; /telemetry/anomalies only 1h..48h, so 7d is clamped there.
const WINDOWS = [["1h", 1], ["3h", 3], ["6h", 6], ["12h", 12], ["24h", 24], ["48h", 48], ["7d", 168]];
const ANOMALY_WINDOWS = ["1h", "3h", "6h", "12h", "24h", "48h"];
const DEFAULT_WINDOW = "6h";
const KINDS = ["job_submission", "job_result", "test_result", "runtime_error", "job_skip"];
const FILTERS = [["lab", "Lab"], ["device_type", "Device type"], ["kind", "Kind"], ["tree", "Tree"], ["branch", "Branch"]];
const MAX_BARS = 20; // categories drawn per chart (rows come sorted by total)
const MAX_ANOMALIES = 50; // rows shown per anomaly table
const BUCKETS = 12; // columns of the time chart
const SLOW_MS = 30000;
const DEFAULTS = { threshold: "0.5", min_total: "3" }; // the API's, of anomalies

const main = frame("analytics");
const params = new URLSearchParams(location.search);
const state = {
  window: WINDOWS.some(([w]) => w === params.get("window")) ? params.get("window") : DEFAULT_WINDOW,
  filters: Object.fromEntries(FILTERS.map(([k]) => [k, params.get(k) || ""])),
  ...DEFAULTS,
  ...Object.fromEntries(Object.keys(DEFAULTS).filter((k) => params.get(k)).map((k) => [k, params.get(k)])),
};
if (params.has("window") && params.get("window") !== state.window) {
  notify(`Unknown window “${params.get("window")}”: showing ${DEFAULT_WINDOW}.`, "error");
}

// -- the form ------------------------------------------------------------------

const seen = { lab: new Set(), device_type: new Set() }; // datalist suggestions
const lists = { lab: h("datalist", { id: "labs" }), device_type: h("datalist", { id: "device-types" }) };

function field(key, label) {
  const attrs = { id: `f-${key}`, name: key, value: state.filters[key] };
  let input;
  if (key === "kind") {
    input = h("select", attrs, h("option", { value: "" }, "all kinds"),
      KINDS.map((k) => h("option", { value: k, selected: k === state.filters.kind }, k)));
  } else {
    input = h("input", { ...attrs, list: lists[key] ? lists[key].id : null, placeholder: "any", size: 12 });
  }
  input.addEventListener("change", () => { state.filters[key] = input.value.trim(); changed(); });
  return h("label", null, label, input);
}

const windowSelect = h("select", { id: "window", name: "window" },
  WINDOWS.map(([w, hours]) => h("option", { value: w, selected: w === state.window },
    hours < 168 ? `last ${hours} h` : "last 7 days")));
windowSelect.addEventListener("change", () => { state.window = windowSelect.value; changed(); });

function numberField(key, label, attrs) {
  const input = h("input", { id: key, name: key, type: "number", value: state[key], "aria-describedby": `${key}-error`, ...attrs });
  // Empty (or, for a number field, not a number) means the API's default.
  input.addEventListener("change", () => { state[key] = input.value.trim() || DEFAULTS[key]; changed(); });
  return h("label", null, label, input, h("span", { id: `${key}-error`, class: "field-error" }));
}

const clear = h("button", { type: "button", class: "secondary", id: "clear" }, "Clear filters");
clear.addEventListener("click", () => {
  for (const [k] of FILTERS) { state.filters[k] = ""; document.getElementById(`f-${k}`).value = ""; }
  changed();
});

const summary = h("p", { id: "summary", class: "muted", role: "status" }, "Loading…");
const statsError = h("p", { id: "stats-error", class: "field-error", role: "alert" });
const totals = h("div", { id: "totals", class: "totals", hidden: true });
const panels = {
  lab: h("section", { class: "panel", id: "by-lab", "aria-labelledby": "h-lab" }),
  device: h("section", { class: "panel", id: "by-device", "aria-labelledby": "h-device" }),
  infra: h("section", { class: "panel", id: "infra", "aria-labelledby": "h-infra" }),
  time: h("section", { class: "panel", id: "over-time", "aria-labelledby": "h-time" }),
};
const charts = h("div", { class: "grid charts", hidden: true }, Object.values(panels));
const noData = h("div", { class: "panel empty", id: "no-telemetry", hidden: true },
  h("strong", null, "No telemetry in this window"),
  h("p", { class: "muted" }, "Choose a longer window or fewer filters; pipeline services post events to /telemetry."));
const anomalies = h("section", { class: "panel", id: "anomalies", "aria-labelledby": "h-anomalies" });

fill(main,
  h("h1", null, "Analytics"),
  h("form", { class: "panel filters", id: "filters", onsubmit: (e) => e.preventDefault() },
    h("div", { class: "row" },
      h("label", null, "Window", windowSelect),
      FILTERS.map(([k, label]) => field(k, label)),
      clear),
    lists.lab, lists.device_type),
  summary, statsError, totals, noData, charts, anomalies);

// -- loading -------------------------------------------------------------------

const hours = () => WINDOWS.find(([w]) => w === state.window)[1];
const iso = (ms) => new Date(ms).toISOString();
const filterParams = () => Object.fromEntries(Object.entries(state.filters).filter(([, v]) => v));

// The link of this view, with `filters` in place of the current ones.
function viewLink(filters) {
  const q = { window: state.window, ...(filters || filterParams()) };
  for (const k of Object.keys(DEFAULTS)) if (state[k] !== DEFAULTS[k]) q[k] = state[k];
  return `${location.pathname}${queryString(q)}`;
}

// The view lives in the URL (replaceState: a shareable link without
// history noise).
const saveUrl = () => history.replaceState(null, "", viewLink());

function changed() {
  saveUrl();
  load();
}

// A stats row as a chart row: the result counts plus what has no result.
function chartRow(label, r) {
  const other = r.total - r.pass - r.fail - r.incomplete - r.skip;
  return { label, values: { pass: r.pass, fail: r.fail, incomplete: r.incomplete, skip: r.skip, other } };
}

const name = (v) => (v === null || v === undefined || v === "" ? "(none)" : String(v));

// Refills a chart panel, keeping its numbers table open and its toggle
// focused if they were (refreshes come every few seconds while someone reads).
function redraw(panel, ...children) {
  const old = panel.querySelector(".chart-toggle");
  const open = old && old.getAttribute("aria-expanded") === "true";
  const focused = old && document.activeElement === old;
  fill(panel, ...children);
  const toggle = panel.querySelector(".chart-toggle");
  if (toggle && open) toggle.click();
  if (toggle && focused) toggle.focus();
}

function drawPanel(panel, heading, id, rows, draw, empty) {
  const more = rows.length > MAX_BARS
    ? h("p", { class: "muted" }, `The ${MAX_BARS} largest of ${rows.length} groups are drawn.`) : null;
  redraw(panel, h("h2", { id }, heading),
    rows.length ? [draw(rows.slice(0, MAX_BARS)), more] : h("p", { class: "empty muted" }, empty));
}

// Shows the charts, or (nothing to draw, or the read failed) hides them.
function showCharts(shown, failed) {
  charts.hidden = !shown;
  totals.hidden = !shown;
  noData.hidden = shown || failed;
}

let generation = 0; // answers of an older load are dropped
let lastLoad = 0;
let pending = null; // the timer of a refresh asked for by soon()
let busy = false; // a load is running
let again = false; // soon() was called while it ran

// Reads everything for the current view; a newer load (a person changed
// the view) makes the answers of an older one be dropped.
async function load() {
  const gen = ++generation;
  lastLoad = Date.now();
  clearTimeout(pending);
  pending = null;
  busy = true;
  const now = Date.now();
  const since = iso(now - hours() * 3600e3);
  const base = { ...filterParams(), since };
  main.setAttribute("aria-busy", "true");
  const stats = (group_by, extra) => get("/telemetry/stats", { group_by, ...base, ...extra });
  // Time buckets: [since, until] bounds are inclusive, so each ends 1 ms
  // before the next starts; the last one is open, as the other reads.
  const width = (hours() * 3600e3) / BUCKETS;
  const buckets = Array.from({ length: BUCKETS }, (_, i) => {
    const from = now - hours() * 3600e3 + i * width;
    const until = i < BUCKETS - 1 ? iso(from + width - 1) : null;
    return { from, answer: stats("kind", { since: iso(from), until }) };
  });
  try {
    const [byLab, byDevice, byBoth, ...slices] = await Promise.all([
      stats("runtime"), stats("device_type"), stats("runtime,device_type"), ...buckets.map((b) => b.answer)]);
    if (gen !== generation) return;
    statsError.textContent = "";
    drawStats(byLab, byDevice, byBoth, buckets.map((b, i) => ({ from: b.from, rows: slices[i] })), since);
  } catch (err) {
    if (gen !== generation) return;
    // A refused filter: the API's own words.
    statsError.textContent = `Telemetry could not be read: ${describeError(err)}`;
    summary.textContent = "";
    showCharts(false, true);
  }
  try {
    await loadAnomalies(gen);
  } finally {
    if (gen === generation) {
      main.removeAttribute("aria-busy");
      busy = false;
      if (again) { again = false; soon(); }
    }
  }
}

// The counts of stats rows added up.
const COUNTS = ["total", "pass", "fail", "incomplete", "skip", "infra_error"];
const add = (rows) => Object.fromEntries(COUNTS.map((k) => [k, rows.reduce((n, r) => n + r[k], 0)]));

function drawStats(byLab, byDevice, byBoth, slices, since) {
  const all = add(byLab);
  summary.textContent = `Telemetry since ${when(since)} UTC · updated ${new Date().toISOString().slice(11, 19)} UTC`;
  showCharts(byLab.length > 0, false);
  if (!byLab.length) return;
  fill(totals, COUNTS.map((k) =>
    h("div", { class: `total-box ${k}`, dataset: { key: k } },
      h("strong", { class: "count" }, String(all[k])), h("span", null, k === "infra_error" ? "infra errors" : k))));
  for (const r of byLab) if (seen.lab.size < 200) seen.lab.add(r.runtime);
  for (const r of byDevice) if (r.device_type && seen.device_type.size < 200) seen.device_type.add(r.device_type);
  fill(lists.lab, [...seen.lab].sort().map((v) => h("option", { value: v })));
  fill(lists.device_type, [...seen.device_type].sort().map((v) => h("option", { value: v })));

  const empty = "No telemetry in this window";
  drawPanel(panels.lab, "Results by lab", "h-lab", byLab.map((r) => chartRow(name(r.runtime), r)),
    (rows) => stackedBars({ title: "Results by lab", category: "lab", rows, series: RESULTS }), empty);
  drawPanel(panels.device, "Results by device type", "h-device", byDevice.map((r) => chartRow(name(r.device_type), r)),
    (rows) => stackedBars({ title: "Results by device type", category: "device type", rows, series: RESULTS }), empty);
  const infra = byBoth.filter((r) => r.infra_error > 0).sort((a, b) => b.infra_error - a.infra_error)
    .map((r) => ({ label: `${name(r.runtime)} / ${name(r.device_type)}`, values: { infra_error: r.infra_error, ok: r.total - r.infra_error } }));
  drawPanel(panels.infra, "Infra errors by lab and device type", "h-infra", infra,
    (rows) => stackedBars({
      title: "Infra errors by lab / device type", category: "lab / device type", rows,
      series: [{ key: "infra_error", label: "infra error", color: "var(--warn)" }, { key: "ok", label: "other events", color: "var(--line)" }],
    }), "No infra errors in this window");
  // The time chart always has its BUCKETS columns, empty ones too.
  const spanDays = hours() > 48;
  const label = (ms) => { const d = new Date(ms).toISOString(); return spanDays ? d.slice(5, 16).replace("T", " ") : d.slice(11, 16); };
  const points = slices.map(({ from, rows }) => ({ ...chartRow(`from ${when(iso(from))}`, add(rows)), shortLabel: label(from) }));
  redraw(panels.time, h("h2", { id: "h-time" }, "Results over time (UTC)"),
    columns({ title: "Results over time", category: "from (UTC)", rows: points, series: RESULTS, ticks: spanDays ? 4 : 6 }));
}

// -- anomalies -----------------------------------------------------------------

const thresholdField = numberField("threshold", "Rate threshold (0–1)", { min: 0, max: 1, step: 0.05 });
const minTotalField = numberField("min_total", "At least N events", { min: 1, step: 1 });
const anomalyTitle = h("span", { class: "muted" });
const anomalyBody = h("div", { id: "anomaly-body" });
fill(anomalies, h("h2", { id: "h-anomalies" }, "Anomalies", anomalyTitle),
  h("div", { class: "row" }, thresholdField, minTotalField), anomalyBody);

async function loadAnomalies(gen) {
  const clamped = !ANOMALY_WINDOWS.includes(state.window);
  const window = clamped ? "48h" : state.window;
  let answer;
  try {
    answer = await get("/telemetry/anomalies", { window, threshold: state.threshold, min_total: state.min_total });
  } catch (err) {
    if (gen !== generation) return;
    // A 422 names the parameter: its message goes next to that field.
    markFields(Array.isArray(err.detail) ? err.detail : []);
    fill(anomalyBody, h("p", { class: "field-error", role: "alert", id: "anomaly-error" },
      `Anomalies could not be read: ${describeError(err)}`));
    return;
  }
  if (gen !== generation) return;
  markFields([]);
  anomalyTitle.textContent = clamped ? " (last 48 h)" : "";
  // The API does not filter anomalies; lab and device type are applied here.
  const { lab, device_type } = state.filters;
  const results = answer.result_anomalies
    .filter((r) => (!lab || r.runtime === lab) && (!device_type || r.device_type === device_type));
  const errorRows = answer.error_anomalies.filter((r) => !lab || r.runtime === lab);
  const pct = (x) => `${Math.round(x * 1000) / 10} %`;
  const rate = (x) => h("td", { class: `num rate${x >= answer.threshold ? " high" : ""}` }, pct(x));
  const note = [
    clamped ? "Anomalies cover at most 48 h: this table uses the last 48 h, not 7 days. " : "",
    state.filters.kind || state.filters.tree || state.filters.branch
      ? "Kind, tree and branch filters do not apply to anomalies. " : "",
  ].join("");
  fill(anomalyBody,
    note ? h("p", { class: "note", id: "anomaly-note" }, note) : null,
    h("p", { class: "muted" }, `Lab and device type groups of the last ${answer.window.replace("h", " h")} with at least ${answer.min_total} job or test results whose fail or infra error rate is at least ${pct(answer.threshold)}; since ${when(answer.since)} UTC.`),
    results.length ? h("div", { class: "table-wrap" }, h("table", { id: "anomaly-table" },
      h("thead", null, h("tr", null, ["Lab", "Device type", "Fail rate", "Infra rate", "Events", "Pass", "Fail", "Incomplete", "Infra", "Last seen (UTC)", "Latest error"]
        .map((t, i) => h("th", { scope: "col", class: i >= 2 && i <= 8 ? "num" : null }, t)))),
      h("tbody", null, results.slice(0, MAX_ANOMALIES).map((r) =>
        h("tr", { dataset: { lab: r.runtime, deviceType: r.device_type || "" } },
          h("td", null, h("a", { href: viewLink({ lab: r.runtime }), title: "Show only this lab" }, r.runtime)),
          h("td", null, r.device_type
            ? h("a", { href: viewLink({ lab: r.runtime, device_type: r.device_type }), title: "Show only this lab and device type" }, r.device_type)
            : name(r.device_type),
          r.constant_failure ? h("span", { class: "badge r-fail" }, "always failing") : null,
          r.constant_infra_failure ? h("span", { class: "badge r-incomplete" }, "always infra") : null),
          rate(r.fail_rate), rate(r.infra_rate),
          [r.total, r.pass, r.fail, r.incomplete, r.infra_error].map((n) => h("td", { class: "num" }, String(n))),
          h("td", null, when(r.last_seen)),
          h("td", { class: "error-msg" }, [r.latest_error_type, r.latest_error_msg].filter(Boolean).join(": ")))))))
      : h("p", { class: "empty muted" }, "No anomalies in this window"),
    results.length > MAX_ANOMALIES ? h("p", { class: "muted" }, `The first ${MAX_ANOMALIES} of ${results.length} are shown.`) : null,
    h("h3", null, "Frequent runtime errors and skips"),
    errorRows.length ? h("div", { class: "table-wrap" }, h("table", { id: "error-table" },
      h("thead", null, h("tr", null, h("th", { scope: "col" }, "Lab"), h("th", { scope: "col" }, "Error type"), h("th", { scope: "col", class: "num" }, "Count"))),
      h("tbody", null, errorRows.slice(0, MAX_ANOMALIES).map((r) =>
        h("tr", null, h("td", null, r.runtime), h("td", null, name(r.error_type)), h("td", { class: "num" }, String(r.count)))))))
      : h("p", { class: "empty muted" }, "No frequent errors in this window"));
}

// Shows the 422 items of the anomaly parameters next to their fields.
function markFields(items) {
  for (const key of ["threshold", "min_total"]) {
    const item = items.find((i) => (i.loc || [])[1] === key);
    document.getElementById(`${key}-error`).textContent = item ? item.msg : "";
    document.getElementById(key).setAttribute("aria-invalid", item ? "true" : "false");
  }
}

// -- keeping current -------------------------------------------------------------

// Telemetry is not on the node stream, so there is no event that says "new
// telemetry". Node events are the sign that the pipeline is busy, so each
// one asks for a re-read (throttled: one every 5 s for a window of up to
// 10 h, longer for wider windows, whose ~16 aggregations cost more: at
// most one a minute), and a slow 30 s timer covers telemetry that arrives
// while no node changes.
// A refresh never supersedes a running one (a slow server would otherwise
// never finish drawing): it waits for it.
function soon() {
  if (busy) { again = true; return; }
  if (pending) return;
  const throttle = Math.min(60000, Math.max(5000, hours() * 500));
  pending = setTimeout(load, Math.max(0, lastLoad + throttle - Date.now()));
}

saveUrl();
load();
follow("node").listen(() => soon());
setInterval(soon, SLOW_MS);
