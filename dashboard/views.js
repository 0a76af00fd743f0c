// The five views. Each turns one response into a chart with a text alternative, the data
// table behind it, and CSV rows; show() lays those out the same way in every panel.
import * as Plot from "./vendor/plot.js";

const WIDTH = 880;
const CI_COLOUR = "#1f1f1f";
const COMPARATOR_COLOUR = "#000000";
const LINE_COLOUR = "#1f4e99";

/** document.createElement with attributes and children (strings become text). */
export function h(tag, attributes = {}, ...children) {
  const svg = ["svg", "rect", "line", "circle", "text", "g"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attributes)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c);
  return el;
}

/** A withheld cell: the `*` of the footnote, with words for screen readers. */
function star() {
  return h("span", { class: "withheld" }, h("span", { "aria-hidden": "true" }, "*"), h("span", { class: "visually-hidden" }, "withheld"));
}

/** Plot's SVG, made fit for a page whose CSP forbids inline styles: Plot adds a <style>
 * element to every chart, which `style-src 'self'` blocks (and reports). Its rules are in
 * style.css under the class given here, so the element is dropped before the chart is put
 * in the document (an unconnected <style> is never applied, so never blocked). */
function plot(options) {
  const chart = Plot.plot({ className: "poplar-plot", width: WIDTH, style: null, ...options });
  for (const s of chart.querySelectorAll("style")) s.remove();
  chart.setAttribute("aria-hidden", "true"); // the figure's role="img" label speaks for it
  return chart;
}

/** Names a mark's <g>: a class to find it by (the browser test does) and a description. */
const mark = (name) => ({ className: `mark-${name.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}`, ariaDescription: name });

const rangeText = (ctx, values) => {
  const xs = values.map((v) => v.value);
  return xs.length ? `from ${ctx.m.format(Math.min(...xs), ctx.measure)} to ${ctx.m.format(Math.max(...xs), ctx.measure)}` : "";
};

function countBy(ctx, values) {
  const counts = new Map();
  for (const v of values) {
    const label = ctx.m.isSuppressed(v) ? "withheld" : ctx.m.significance(v).label.toLowerCase();
    counts.set(label, (counts.get(label) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${n} ${k}`).join(", ");
}

/** Columns of the value tables (compare, trend, funnel, inequalities). */
function valueColumns(ctx, first) {
  const { m, measure, policy } = ctx;
  const shown = (v, x) => (m.isSuppressed(v) ? star() : m.format(x, measure));
  const count = (v, x) => (m.isSuppressed(v) || x === undefined ? star() : Number(x).toLocaleString("en-GB"));
  return [
    first,
    { label: `Value${m.unitOf(measure) ? ` (${m.unitOf(measure)})` : ""}`, numeric: true, cell: (v) => shown(v, v.value) },
    { label: "Lower 95% CI", numeric: true, cell: (v) => shown(v, v.ci95?.lower) },
    { label: "Upper 95% CI", numeric: true, cell: (v) => shown(v, v.ci95?.upper) },
    { label: "Count", numeric: true, cell: (v) => count(v, v.numerator) },
    { label: "Denominator", numeric: true, cell: (v) => count(v, v.denominator) },
    { label: "Compared with comparator", cell: (v) => (m.isSuppressed(v) ? "" : m.significance(v).label) },
    { label: "Note", cell: (v) => m.suppressionNote(v, policy) },
  ];
}

function table(caption, columns, rows) {
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.numeric ? "num" : undefined }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            { class: row.suppressedRow ? "suppressed" : undefined },
            columns.map((c, i) =>
              h(i === 0 ? "th" : "td", { scope: i === 0 ? "row" : undefined, class: c.numeric ? "num" : undefined }, c.cell(row)),
            ),
          ),
        ),
      ),
    ),
  );
}

const withFlag = (ctx, values) => values.map((v) => Object.assign(Object.create(v), { suppressedRow: ctx.m.isSuppressed(v) }));

const LEGEND_WORDS = {
  BETTER: "Better than the comparator",
  SIMILAR: "Similar to the comparator",
  WORSE: "Worse than the comparator",
  HIGHER: "Higher than the comparator",
  LOWER: "Lower than the comparator",
  NOT_COMPARED: "Not compared",
};

function legend(ctx, present, extra = []) {
  const keys = new Set(present.filter((v) => !ctx.m.isSuppressed(v)).map((v) => ctx.m.significance(v).key));
  const items = ctx.m.significanceScale.filter((s) => keys.has(s.key));
  return h(
    "ul",
    { class: "legend", "aria-label": "Key" },
    items.map((s) =>
      h("li", {}, h("svg", { width: 14, height: 14, "aria-hidden": "true" }, h("rect", { width: 14, height: 14, fill: s.colour })), ` ${LEGEND_WORDS[s.key]}`),
    ),
    extra.map((e) => h("li", {}, h("svg", { width: 22, height: 14, "aria-hidden": "true" }, e.swatch), ` ${e.label}`)),
  );
}

const comparatorSwatch = () => h("line", { x1: 11, x2: 11, y1: 0, y2: 14, stroke: COMPARATOR_COLOUR, "stroke-width": 2 });
const ciSwatch = () => h("line", { x1: 2, x2: 20, y1: 7, y2: 7, stroke: CI_COLOUR, "stroke-width": 1.5 });

/** Rows of a horizontal bar chart with CI whiskers: compare areas and inequalities.
 * Rows are keyed (area code, category key) because names repeat: two practices may share
 * one. A chart where everything is withheld still shows its rows, each with a `*`. */
function bars(ctx, rows, comparatorLine, comparatorTicks) {
  const { m, measure } = ctx;
  const labels = new Map(rows.map((r) => [r.key, r.label]));
  const shown = rows.filter((r) => !m.isSuppressed(r.v));
  const withheld = rows.filter((r) => m.isSuppressed(r.v)).map((r) => ({ key: r.key }));
  const data = shown.map((r) => ({ key: r.key, value: r.v.value, lo: r.v.ci95?.lower, hi: r.v.ci95?.upper, fill: m.significance(r.v).colour }));
  const nothing = data.length === 0 && comparatorLine === undefined && !comparatorTicks?.length;
  return plot({
    height: 40 + rows.length * 24,
    marginLeft: 250,
    x: {
      label: `${measure.title}${m.unitOf(measure) ? ` (${m.unitOf(measure)})` : ""}`,
      grid: true,
      nice: true,
      domain: nothing ? [0, 1] : undefined, // else a single point, drawn as 0.000000
      ticks: nothing ? 0 : undefined,
    },
    y: { domain: rows.map((r) => r.key), label: null, tickFormat: (k) => truncate(labels.get(k), 40) },
    marks: [
      Plot.barX(data, { y: "key", x: "value", fill: "fill", ...mark("values") }),
      Plot.ruleY(data.filter((d) => d.lo !== undefined), { y: "key", x1: "lo", x2: "hi", stroke: CI_COLOUR, ...mark("95% confidence intervals") }),
      Plot.tickX(data.filter((d) => d.lo !== undefined), { y: "key", x: "lo", stroke: CI_COLOUR, inset: 6 }),
      Plot.tickX(data.filter((d) => d.hi !== undefined), { y: "key", x: "hi", stroke: CI_COLOUR, inset: 6 }),
      Plot.text(withheld, { y: "key", x: 0, text: () => "*", dx: 6, textAnchor: "start", fontSize: 14, ...mark("withheld") }),
      comparatorLine === undefined ? null : Plot.ruleX([comparatorLine], { stroke: COMPARATOR_COLOUR, strokeWidth: 2, ...mark("comparator") }),
      !comparatorTicks ? null : Plot.tickX(comparatorTicks, { y: "key", x: "value", stroke: COMPARATOR_COLOUR, strokeWidth: 3, ...mark("comparator") }),
      Plot.ruleX([0]),
    ],
  });
}

const truncate = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

// ---- the views ---------------------------------------------------------------------

/** Compare areas: one period, one group (the area's total or one breakdown cell). */
export function compareView(ctx, res, category) {
  const { m, measure } = ctx;
  const values = res.values.filter((v) => m.categoryKey(v) === category);
  const comp = res.comparator.find((c) => m.categoryKey(c) === category && !m.isSuppressed(c));
  const rows = values
    .map((v) => ({ v, key: v.areaCode, label: `${v.areaName || v.areaCode} (${v.areaCode})` }))
    .sort((a, b) => (b.v.value ?? -Infinity) - (a.v.value ?? -Infinity) || a.label.localeCompare(b.label));
  const group = values[0] ? m.categoryLabel(values[0]) : "";
  const period = values[0]?.period?.label ?? "";
  const what = `${measure.title}, ${period}${category ? `, ${group}` : ""}`;
  return {
    chart: bars(ctx, rows, comp?.value),
    label:
      `Bar chart of ${what} for ${values.length} ${ctx.levelPlural}: values ${rangeText(ctx, values.filter((v) => !m.isSuppressed(v)))}; ` +
      `${countBy(ctx, values)}` + (comp ? `; comparator ${comp.areaName || comp.areaCode} ${m.format(comp.value, measure)}.` : "."),
    caption: `${what}: each bar is an area, the whiskers its 95% confidence interval` + (comp ? `, the vertical line ${comp.areaName || comp.areaCode} (${m.format(comp.value, measure)}).` : "."),
    legend: legend(ctx, values, comp ? [{ swatch: comparatorSwatch(), label: `${comp.areaName || comp.areaCode} (comparator)` }, { swatch: ciSwatch(), label: "95% confidence interval" }] : [{ swatch: ciSwatch(), label: "95% confidence interval" }]),
    table: table(`${what}, by area`, valueColumns(ctx, { label: "Area", cell: (v) => `${v.areaName} (${v.areaCode})` }), withFlag(ctx, rows.map((r) => r.v))),
    values,
  };
}

/** Trend: one area over a range of periods, with its 95% CI band and the comparator. */
export function trendView(ctx, res) {
  const { m, measure } = ctx;
  const labels = [...new Set(res.values.map((v) => v.period.label))];
  const values = res.values.filter((v) => v.categories.length === 0);
  const comps = res.comparator.filter((c) => c.categories.length === 0);
  const area = values[0] ? values[0].areaName || values[0].areaCode : "";
  const shown = values.filter((v) => !m.isSuppressed(v)).map((v) => ({ period: v.period.label, value: v.value, lo: v.ci95?.lower, hi: v.ci95?.upper, fill: m.significance(v).colour }));
  const withheld = values.filter((v) => m.isSuppressed(v)).map((v) => ({ period: v.period.label }));
  const compData = comps.filter((c) => !m.isSuppressed(c)).map((c) => ({ period: c.period.label, value: c.value }));
  const compName = comps[0] ? comps[0].areaName || comps[0].areaCode : "";
  const chart = plot({
    height: 360,
    marginLeft: 60,
    marginBottom: 50,
    x: { type: "point", domain: labels, label: "Period", tickRotate: labels.length > 8 ? -30 : 0 },
    y: { label: `${measure.title}${m.unitOf(measure) ? ` (${m.unitOf(measure)})` : ""}`, grid: true, nice: true },
    marks: [
      Plot.areaY(shown, { x: "period", y1: "lo", y2: "hi", fill: LINE_COLOUR, fillOpacity: 0.18, ...mark("95% confidence interval") }),
      Plot.lineY(shown, { x: "period", y: "value", stroke: LINE_COLOUR, strokeWidth: 2, ...mark("value") }),
      Plot.dot(shown, { x: "period", y: "value", fill: "fill", stroke: "#333", r: 5, ...mark("values") }),
      Plot.lineY(compData, { x: "period", y: "value", stroke: COMPARATOR_COLOUR, strokeDasharray: "5 4", strokeWidth: 1.5, ...mark("comparator") }),
      Plot.text(withheld, { x: "period", frameAnchor: "bottom", dy: -6, text: () => "*", fontSize: 16, ...mark("withheld") }),
    ],
  });
  const what = `${measure.title} for ${area}, ${labels[0] ?? ""} to ${labels.at(-1) ?? ""}`;
  const first = shown[0], last = shown.at(-1);
  return {
    chart,
    label:
      `Line chart of ${what}: ${values.length} periods` +
      (first && last ? `, from ${m.format(first.value, measure)} in ${first.period} to ${m.format(last.value, measure)} in ${last.period}` : "") +
      (withheld.length ? `; ${withheld.length} withheld` : "") +
      (compName ? `; dashed line ${compName}.` : "."),
    caption: `${what}: the shaded band is the 95% confidence interval` + (compName ? `, the dashed line ${compName}.` : "."),
    legend: legend(ctx, values, [
      { swatch: h("line", { x1: 0, x2: 22, y1: 7, y2: 7, stroke: LINE_COLOUR, "stroke-width": 2 }), label: area },
      { swatch: h("rect", { x: 0, y: 2, width: 22, height: 10, fill: LINE_COLOUR, "fill-opacity": 0.18 }), label: "95% confidence interval" },
      compName && { swatch: h("line", { x1: 0, x2: 22, y1: 7, y2: 7, stroke: COMPARATOR_COLOUR, "stroke-dasharray": "5 4" }), label: `${compName} (comparator)` },
    ].filter(Boolean)),
    table: table(`${what}, by period`, valueColumns(ctx, { label: "Period", cell: (v) => v.period.label }), withFlag(ctx, values)),
    values,
  };
}

/** Funnel plot: every area's value against its denominator, with the 95% and 99.8% limits. */
export function funnelView(ctx, res) {
  const { m, measure } = ctx;
  const values = res.values;
  const points = values
    .filter((v) => !m.isSuppressed(v) && v.denominator !== undefined)
    .map((v) => ({ x: Number(v.denominator), y: v.value, fill: m.significance(v).colour, name: v.areaName || v.areaCode }));
  const limits = res.limits.map((l) => ({ x: l.denominator, lo95: l.limit95?.lower, hi95: l.limit95?.upper, lo998: l.limit998?.lower, hi998: l.limit998?.upper }));
  const line = (key, dash, name) => Plot.line(limits, { x: "x", y: key, stroke: "#555", strokeDasharray: dash, strokeWidth: 1.5, ...mark(name) });
  const period = values[0]?.period?.label ?? ctx.period;
  const chart = plot({
    height: 420,
    marginLeft: 60,
    x: { label: "Denominator", grid: true, nice: true },
    y: { label: `${measure.title}${m.unitOf(measure) ? ` (${m.unitOf(measure)})` : ""}`, grid: true, nice: true },
    marks: [
      line("lo998", "2 3", "lower 99.8% limit"),
      line("hi998", "2 3", "upper 99.8% limit"),
      line("lo95", "6 3", "lower 95% limit"),
      line("hi95", "6 3", "upper 95% limit"),
      res.target === undefined ? null : Plot.ruleY([res.target], { stroke: COMPARATOR_COLOUR, strokeWidth: 1.5, ...mark("target") }),
      Plot.dot(points, { x: "x", y: "y", fill: "fill", stroke: "#222", r: 5, ...mark("areas") }),
    ],
  });
  const outside95 = points.filter((p) => {
    const l = nearestLimit(limits, p.x);
    return l && (p.y < l.lo95 || p.y > l.hi95);
  }).length;
  const withheld = values.length - points.length;
  const what = `${measure.title}, ${period}, ${values.length} ${ctx.levelPlural}`;
  return {
    chart,
    label:
      `Funnel plot of ${what}: value against denominator` +
      (res.target !== undefined ? `, centre line ${m.format(res.target, measure)}` : "") +
      `; ${outside95} of ${points.length} plotted areas outside the 95% limits` +
      (withheld ? `; ${withheld} withheld and not plotted.` : "."),
    caption:
      `${what}: each dot is an area, placed by its value and its denominator (${measure.denominatorText || "people"}); ` +
      "the solid line is the target, the dashed curves the 95% limits, the dotted curves the 99.8% limits.",
    legend: legend(ctx, values, [
      res.target !== undefined && { swatch: comparatorSwatch(), label: `Target ${m.format(res.target, measure)}` },
      { swatch: h("line", { x1: 0, x2: 22, y1: 7, y2: 7, stroke: "#555", "stroke-dasharray": "6 3" }), label: "95% limits" },
      { swatch: h("line", { x1: 0, x2: 22, y1: 7, y2: 7, stroke: "#555", "stroke-dasharray": "2 3" }), label: "99.8% limits" },
    ].filter(Boolean)),
    table: table(`${what}, by area`, valueColumns(ctx, { label: "Area", cell: (v) => `${v.areaName} (${v.areaCode})` }), withFlag(ctx, values)),
    values,
  };
}

function nearestLimit(limits, x) {
  let best;
  for (const l of limits) if (!best || Math.abs(l.x - x) < Math.abs(best.x - x)) best = l;
  return best;
}

/** Inequalities: one area, broken down, with the comparator's value for each group. */
export function inequalitiesView(ctx, res) {
  const { m, measure } = ctx;
  const values = res.values.filter((v) => v.categories.length > 0);
  const rows = values.map((v) => ({ v, key: m.categoryKey(v), label: m.categoryLabel(v) }));
  const compByKey = new Map(res.comparator.filter((c) => !m.isSuppressed(c)).map((c) => [m.categoryKey(c), c]));
  const ticks = rows.filter((r) => compByKey.has(m.categoryKey(r.v))).map((r) => ({ key: r.key, value: compByKey.get(r.key).value }));
  const compName = res.comparator[0] ? res.comparator[0].areaName || res.comparator[0].areaCode : "";
  const area = values[0] ? values[0].areaName || values[0].areaCode : "";
  const dims = ctx.breakdown.map((d) => m.dimensionName(d).toLowerCase()).join(" and ");
  const what = `${measure.title} for ${area}, ${values[0]?.period?.label ?? ""}, by ${dims}`;
  return {
    chart: bars(ctx, rows, undefined, ticks),
    label:
      `Bar chart of ${what}: ${values.length} groups, values ${rangeText(ctx, values.filter((v) => !m.isSuppressed(v)))}; ${countBy(ctx, values)}.`,
    caption: `${what}: each bar is a group, the whiskers its 95% confidence interval` + (compName ? `, the black mark ${compName}'s value for the same group.` : "."),
    legend: legend(ctx, values, [
      { swatch: ciSwatch(), label: "95% confidence interval" },
      compName && { swatch: h("line", { x1: 11, x2: 11, y1: 0, y2: 14, stroke: COMPARATOR_COLOUR, "stroke-width": 3 }), label: `${compName} (comparator), same group` },
    ].filter(Boolean)),
    table: table(`${what}, by group`, valueColumns(ctx, { label: "Group", cell: (v) => m.categoryLabel(v) }), withFlag(ctx, values)),
    values,
  };
}

/** Area profile: every measure for one area, as a table with a spine chart in each row. */
export function profileView(ctx, res) {
  const { m, policy } = ctx;
  const area = res.area ? `${res.area.name} (${res.area.code})` : "";
  const what = `Every measure for ${area}, ${res.period?.label ?? ""}`;
  const compName = res.rows.find((r) => r.comparator)?.comparator;
  const cell = (v, measure) => (!v || m.isSuppressed(v) ? star() : m.format(v.value, measure));
  const columns = [
    { label: "Measure", cell: (r) => r.measure.title },
    { label: "Unit", cell: (r) => m.unitOf(r.measure) },
    { label: "Count", numeric: true, cell: (r) => (m.isSuppressed(r.value) || r.value.numerator === undefined ? star() : Number(r.value.numerator).toLocaleString("en-GB")) },
    { label: "Value", numeric: true, cell: (r) => cell(r.value, r.measure) },
    { label: "Comparator", numeric: true, cell: (r) => cell(r.comparator, r.measure) },
    { label: "Worst", numeric: true, cell: (r) => m.format(r.worst, r.measure) },
    { label: "Range of peers", cell: (r) => spine(ctx, r) },
    { label: "Best", numeric: true, cell: (r) => m.format(r.best, r.measure) },
    { label: "Compared with comparator", cell: (r) => (m.isSuppressed(r.value) ? "" : m.significance(r.value).label) },
    { label: "Note", cell: (r) => m.suppressionNote(r.value, policy) },
  ];
  const rows = res.rows.map((r) => Object.assign(Object.create(r), { suppressedRow: m.isSuppressed(r.value) }));
  const values = res.rows.map((r) => r.value);
  return {
    chart: null,
    label: `Spine chart of ${what}: ${res.rows.length} measures; ${countBy(ctx, values)}.`,
    caption:
      `${what}. In each row the light bar runs from the worst to the best of the area's peers, the dark bar from the 25th to the 75th percentile; ` +
      `the red line is the comparator${compName ? ` (${compName.areaName || compName.areaCode})` : ""} and the circle the area.`,
    legend: legend(ctx, values),
    table: table(what, columns, rows),
    values,
  };
}

/** One row's spine: peers' worst..best on the left..right, comparator at the centre. */
function spine(ctx, r) {
  const { m } = ctx;
  const W = 240, H = 22, mid = W / 2;
  const centre = r.comparator && !m.isSuppressed(r.comparator) ? r.comparator.value : undefined;
  const ends = [r.worst, r.best, r.q25, r.q75].filter((x) => x !== undefined);
  if (centre === undefined || r.worst === undefined || r.best === undefined) return h("span", {}, "Not enough released values to compare");
  // Scaled as Fingertips does: the comparator in the middle, the furthest of worst and best
  // at the edge, worst always on the left whatever the measure's polarity.
  const half = Math.max(...ends.map((x) => Math.abs(x - centre)), 1e-9);
  const dir = r.best >= r.worst ? 1 : -1;
  const x = (v) => mid + (dir * (v - centre) * (mid - 6)) / half;
  const span = (a, b) => ({ x: Math.min(x(a), x(b)), width: Math.abs(x(b) - x(a)) });
  const value = r.value && !m.isSuppressed(r.value) ? r.value.value : undefined;
  const sig = m.significance(r.value);
  const label =
    `${r.measure.title}: ` +
    (value === undefined ? "area value withheld" : `area ${m.format(value, r.measure)} (${sig.label.toLowerCase()})`) +
    `; comparator ${m.format(centre, r.measure)}; peers from worst ${m.format(r.worst, r.measure)} to best ${m.format(r.best, r.measure)}` +
    (r.q25 !== undefined && r.q75 !== undefined ? `, middle half ${m.format(r.q25, r.measure)} to ${m.format(r.q75, r.measure)}` : "");
  return h(
    "svg",
    { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "spine" },
    h("rect", { ...span(r.worst, r.best), y: 5, height: 12, fill: "#d9d9d9" }),
    r.q25 !== undefined && r.q75 !== undefined && h("rect", { ...span(r.q25, r.q75), y: 5, height: 12, fill: "#8c8c8c" }),
    h("line", { x1: mid, x2: mid, y1: 1, y2: 21, stroke: "#c00000", "stroke-width": 2 }),
    value !== undefined
      ? h("circle", { cx: Math.max(5, Math.min(W - 5, x(value))), cy: 11, r: 5, fill: sig.colour, stroke: "#000" })
      : h("text", { x: mid + 6, y: 16, "font-size": 14 }, "*"),
  );
}

/** Lays out one view's parts in its panel, in the same order in every view. */
export function show(panel, { heading, meta, parts, footnotes, onDownload }) {
  const figure = parts.chart
    ? h("figure", {}, h("div", { class: "chart", role: "img", "aria-label": parts.label }, parts.chart), h("figcaption", {}, parts.caption))
    : h("figure", { class: "no-chart" }, h("figcaption", {}, h("span", { class: "visually-hidden" }, `${parts.label} `), parts.caption));
  const children = [
    h("h2", {}, heading),
    h("p", { class: "meta" }, meta),
    parts.values.length ? null : h("p", { class: "empty" }, "The service returned no values for this choice."),
    figure,
    parts.legend,
    parts.table,
    h("div", { class: "footnotes" }, footnotes.map((f) => h("p", { class: "footnote" }, f))),
    h("button", { type: "button", class: "download", onclick: onDownload }, "Download CSV (Fingertips layout)"),
  ];
  panel.replaceChildren(...children.filter(Boolean));
}
