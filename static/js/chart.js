// Small SVG charts of our own (no library: we need only bars, and the
// binary carries every byte): stackedBars (a horizontal bar per row, label
// above) and columns (a vertical column per row, e.g. time buckets).
// opts = {title, category, rows: [{label, values: {key: n}}], series:
// [{key, label, color}]}. Each returns a <figure>: the SVG (role="img",
// a summary as aria-label, a <title> per bar and segment to hover), a
// legend, and a button showing the numbers as a table. X positions are
// percentages, so text keeps its size on a phone (no viewBox scaling).

import { h } from "./console.js";

const NS = "http://www.w3.org/2000/svg";
let serial = 0;

// The result counts of a /telemetry/stats row; colours from console.css.
export const RESULTS = [
  { key: "pass", label: "pass", color: "var(--pass)" },
  { key: "fail", label: "fail", color: "var(--fail)" },
  { key: "incomplete", label: "incomplete", color: "var(--warn)" },
  { key: "skip", label: "skip", color: "var(--skip)" },
  { key: "other", label: "no result", color: "var(--idle)" },
];

// An SVG element; `tip` becomes its <title> (the hover text).
function el(tag, attrs, tip) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (tip !== undefined) node.append(text({}, tip, "title"));
  return node;
}

function text(attrs, content, tag = "text") {
  const node = el(tag, attrs);
  node.textContent = content;
  return node;
}

const n = (row, key) => Number(row.values[key]) || 0;
const sum = (row, series) => series.reduce((t, s) => t + n(row, s.key), 0);
const parts = (row, series) => series.filter((s) => n(row, s.key)).map((s) => `${s.label} ${n(row, s.key)}`).join(", ");
const tip = (row, series) => `${row.label}: ${sum(row, series)}${sum(row, series) ? ` (${parts(row, series)})` : ""}`;

// The <figure> around a drawn SVG: legend, numbers table and its toggle.
function figure({ title, category, rows, series }, svg) {
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${title}: ${rows.map((r) => tip(r, series)).join("; ")}`);
  const legend = h("div", { class: "legend", "aria-hidden": "true" }, series.map((s) => {
    const swatch = h("i");
    swatch.style.background = s.color;
    return h("span", null, swatch, s.label);
  }));
  const id = `chart-table-${++serial}`;
  const cols = [...series, { key: "total", label: "total" }];
  const table = h("div", { class: "table-wrap chart-numbers", id, hidden: true },
    h("table", null, h("caption", null, title),
      h("thead", null, h("tr", null, h("th", { scope: "col" }, category || ""),
        cols.map((s) => h("th", { scope: "col", class: "num" }, s.label)))),
      h("tbody", null, rows.map((r) => h("tr", { dataset: { category: r.label } },
        h("th", { scope: "row" }, r.label),
        cols.map((s) => h("td", { class: "num", dataset: { key: s.key } },
          s.key === "total" ? sum(r, series) : n(r, s.key))))))));
  const toggle = h("button", { type: "button", class: "secondary chart-toggle", "aria-expanded": "false", "aria-controls": id }, "Show numbers");
  toggle.addEventListener("click", () => {
    table.hidden = !table.hidden;
    toggle.setAttribute("aria-expanded", String(!table.hidden));
    toggle.textContent = table.hidden ? "Show numbers" : "Hide numbers";
  });
  return h("figure", { class: "chart-box" }, svg, h("div", { class: "row" }, legend, toggle), table);
}

// Draws the stacked segments of `row` in `g`: rect(start, length) gives
// the attributes of a segment from fractions of the largest total.
function stack(g, row, series, rect) {
  let at = 0;
  for (const s of series) {
    if (!n(row, s.key)) continue;
    const seg = el("rect", rect(at, n(row, s.key)), `${row.label} · ${s.label}: ${n(row, s.key)}`);
    seg.style.fill = s.color;
    g.append(seg);
    at += n(row, s.key);
  }
}

const largest = (rows, series) => Math.max(1, ...rows.map((r) => sum(r, series)));

// Horizontal bars; the largest total spans 84 % (room for its number).
export function stackedBars(opts) {
  const { rows, series } = opts;
  const max = largest(rows, series);
  const svg = el("svg", { width: "100%" });
  svg.style.height = `${rows.length * 34 + 4}px`;
  rows.forEach((row, i) => {
    const y = i * 34;
    const total = sum(row, series);
    const g = el("g", { class: "bar", "data-category": row.label, "data-total": total }, tip(row, series));
    g.append(text({ x: 0, y: y + 12 }, row.label));
    stack(g, row, series, (at, len) => ({ x: `${(at / max) * 84}%`, width: `${(len / max) * 84}%`, y: y + 16, height: 14 }));
    g.append(text({ x: `${(total / max) * 84 + 1}%`, y: y + 27, class: "total" }, total));
    svg.append(g);
  });
  return figure(opts, svg);
}

// Columns 134 px tall; a label (row.shortLabel) under at most `ticks` of
// them, each starting where its column starts.
export function columns(opts) {
  const { rows, series, ticks = 6 } = opts;
  const max = largest(rows, series);
  const slot = 100 / Math.max(1, rows.length);
  const every = Math.ceil(rows.length / ticks);
  const svg = el("svg", { width: "100%" });
  svg.style.height = "168px";
  svg.append(text({ x: 0, y: 11 }, `max ${max}`), el("line", { x1: 0, x2: "100%", y1: 150, y2: 150, class: "axis" }));
  rows.forEach((row, i) => {
    const g = el("g", { class: "column", "data-category": row.label, "data-total": sum(row, series) }, tip(row, series));
    // A transparent rect over the whole slot makes all of it hoverable.
    g.append(el("rect", { x: `${i * slot}%`, y: 16, width: `${slot}%`, height: 134, fill: "transparent" }));
    stack(g, row, series, (at, len) => ({
      x: `${(i + 0.15) * slot}%`, width: `${slot * 0.7}%`, y: 150 - (134 * (at + len)) / max, height: (134 * len) / max,
    }));
    if (i % every === 0) g.append(text({ x: `${i * slot}%`, y: 164 }, row.shortLabel || row.label));
    svg.append(g);
  });
  return figure(opts, svg);
}
