// Poplar's measures dashboard: sign-in, the controls, the five view tabs. Every number on
// the page comes from the measures service (api.js) as released by disclosure control;
// this file decides what to ask for and where the answer goes.
import { connect, describeError } from "./api.js";
import { csvText, download, makeModel } from "./model.js";
import { resumeSignIn, signedIn, signedOut, signInError, tabList, wireSignIn } from "./shell.js";
import { compareView, funnelView, h, inequalitiesView, profileView, show, trendView } from "./views.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["compare", "trend", "funnel", "inequalities", "profile"];
const LEVELS = ["PRACTICE", "PCN", "SUB_ICB", "ICB", "REGION"]; // smallest first
const PERIOD_TYPES = ["FINANCIAL_YEAR", "QUARTER", "MONTH"]; // the default first
const TREND_LENGTH = 5; // periods a trend shows unless "From" says otherwise

let api = null; // {client, enums}: made once, on the first sign-in
let m = null; // model.js helpers for api.enums
let state = fresh();

function fresh() {
  return {
    token: "",
    catalog: null, // ListMeasuresResponse
    areas: new Map(), // code -> Area, every level
    areasByLevel: new Map(), // AreaLevel -> Area[]
    periods: new Map(), // PeriodType -> Period[] (oldest first)
    view: "compare",
    category: null, // compare view: the breakdown cell shown
    seq: 0, // the latest render; older answers are dropped
    cache: new Map(), // request -> response, so switching tabs asks nothing twice
  };
}

// ---- sign-in -------------------------------------------------------------------------

wireSignIn(signIn, signOut);

async function signIn(token) {
  if (!token) return signInError("Enter your access token.");
  signInError("");
  state.token = token;
  try {
    api ??= await connect(() => state.token);
    m ??= makeModel(api.enums);
    state.catalog = await api.client.listMeasures({});
    await loadReference();
  } catch (error) {
    state = fresh();
    signedOut();
    return signInError(describeError(error).text);
  }
  signedIn(token);
  $("as-of").hidden = false;
  $("as-of").textContent = `Data as of ${dateText(state.catalog.dataAsOf)}`;
  setUpControls();
  selectView(state.view, false);
}

function signOut(message = "") {
  state = fresh();
  for (const view of VIEWS) $(`panel-${view}`).replaceChildren();
  $("as-of").hidden = true;
  signedOut(message);
}

/** Areas of every level and the periods of every type: small lists, asked for once. */
async function loadReference() {
  const { AreaLevel, PeriodType } = api.enums;
  const [areaLists, periodLists] = await Promise.all([
    Promise.all(LEVELS.map((l) => api.client.listAreas({ level: AreaLevel[l] }))),
    Promise.all(PERIOD_TYPES.map((t) => api.client.listPeriods({ type: PeriodType[t] }))),
  ]);
  LEVELS.forEach((l, i) => {
    const areas = [...areaLists[i].areas].sort((a, b) => a.name.localeCompare(b.name));
    state.areasByLevel.set(AreaLevel[l], areas);
    for (const a of areas) state.areas.set(a.code, a);
  });
  PERIOD_TYPES.forEach((t, i) => state.periods.set(PeriodType[t], periodLists[i].periods));
}

// ---- controls ------------------------------------------------------------------------

const options = (select, items, keep) => {
  const previous = keep ? select.value : undefined;
  select.replaceChildren(...items.map(([value, label]) => h("option", { value: String(value) }, label)));
  if (previous !== undefined && items.some(([v]) => String(v) === previous)) select.value = previous;
};
const measure = () => state.catalog.measures.find((x) => x.id === $("measure").value) ?? state.catalog.measures[0];
const level = () => Number($("level").value);
const periodType = () => Number($("period-type").value);
const breakdown = () => [$("breakdown1").value, $("breakdown2").value].filter((d) => d !== "").map(Number);

function setUpControls() {
  options($("measure"), state.catalog.measures.map((x) => [x.id, x.title]), true);
  const types = [...state.periods].filter(([, list]) => list.length > 0);
  options($("period-type"), types.map(([t]) => [t, m.periodTypeName(t)]), true);
  onMeasure();
  onPeriodType();
  $("measure").onchange = () => (onMeasure(), render());
  $("level").onchange = () => (onLevel(), render());
  $("parent").onchange = () => (onParent(), render());
  $("area").onchange = () => render();
  $("period-type").onchange = () => (onPeriodType(), render());
  $("period").onchange = () => (onPeriod(), render());
  $("from").onchange = () => render();
  $("breakdown1").onchange = () => (onBreakdown(), render());
  $("breakdown2").onchange = () => render();
  $("category").onchange = () => ((state.category = $("category").value), render());
}

function onMeasure() {
  const x = measure();
  const { AreaLevel } = api.enums;
  const allowed = x.levels.length ? x.levels : LEVELS.map((l) => AreaLevel[l]);
  const levels = LEVELS.map((l) => AreaLevel[l]).filter((l) => allowed.includes(l) && state.areasByLevel.get(l)?.length);
  options($("level"), levels.map((l) => [l, m.levelName(l)]), true);
  options($("breakdown1"), [["", "None"], ...x.dimensions.map((d) => [d, m.dimensionName(d)])], true);
  onBreakdown();
  onLevel();
  describeMeasure(x);
}

function onLevel() {
  const above = LEVELS.map((l) => api.enums.AreaLevel[l]).find((l) => l > level() && state.areasByLevel.get(l)?.length);
  $("parent-control").hidden = above === undefined || !controlShown($("parent-control"));
  const parents = above === undefined ? [] : state.areasByLevel.get(above);
  options($("parent"), [["", `All ${m.levelPlural(level())}`], ...parents.map((a) => [a.code, a.name])], true);
  onParent();
}

function onParent() {
  const parent = $("parent").value;
  const areas = (state.areasByLevel.get(level()) ?? []).filter((a) => !parent || a.parentCode === parent);
  options($("area"), areas.map((a) => [a.code, `${a.name} (${a.code})`]), true);
}

function onPeriodType() {
  const list = state.periods.get(periodType()) ?? [];
  // Newest first in the list: the latest period is what people ask for most.
  options($("period"), [...list].reverse().map((p) => [p.label, p.label]), true);
  onPeriod();
}

function onPeriod() {
  const list = state.periods.get(periodType()) ?? [];
  const to = list.findIndex((p) => p.label === $("period").value);
  const earlier = list.slice(0, to + 1);
  const had = $("from").value;
  options($("from"), earlier.map((p) => [p.label, p.label]), true);
  if (!earlier.some((p) => p.label === had) || had === "") $("from").value = earlier[Math.max(0, to - TREND_LENGTH + 1)]?.label ?? "";
}

function onBreakdown() {
  const first = $("breakdown1").value;
  const rest = measure().dimensions.filter((d) => String(d) !== first);
  options($("breakdown2"), [["", "None"], ...(first ? rest.map((d) => [d, m.dimensionName(d)]) : [])], true);
  $("breakdown2").disabled = !first;
  state.category = null;
}

function describeMeasure(x) {
  const rows = [
    ["Description", x.description],
    ["Numerator", x.numeratorText],
    ["Denominator", x.denominatorText],
    ["Type", `${m.valueTypeName(x.valueType)}${x.multiplier && x.multiplier !== 1 ? ` (× ${x.multiplier.toLocaleString("en-GB")})` : ""}`],
    ["Unit", m.unitOf(x)],
    ["Polarity", m.polarityName(x.polarity)],
    ["Confidence intervals", x.ciMethod],
    ["Standard population", x.standardPopulation],
    ["Code lists", x.codelists.join(", ")],
  ].filter(([, v]) => v);
  $("measure-details").replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  $("measure-info").querySelector("summary").textContent = `About this measure: ${x.title}`;
}

const controlShown = (control) => control.dataset.views.split(" ").includes(state.view);

function showControlsFor(view) {
  for (const control of document.querySelectorAll("#controls .control")) control.hidden = !controlShown(control);
  $("category-control").hidden ||= breakdown().length === 0;
  $("measure-info").hidden = view === "profile";
  $("period-label").textContent = view === "trend" ? "To" : "Period";
  onLevel(); // the parent control also hides at the top level
}

// ---- tabs (WAI-ARIA tabs pattern, automatic activation) ------------------------------

const selectView = tabList(VIEWS, () => state.view, (view) => {
  state.view = view;
  showControlsFor(view);
  render();
});

// ---- asking and showing --------------------------------------------------------------

/** One call, answered from the cache when the same question was asked this session:
 * every question is audited and may count against a budget. */
async function ask(method, request) {
  const key = `${method} ${JSON.stringify(request)}`;
  if (!state.cache.has(key)) {
    const answer = api.client[method](request);
    state.cache.set(key, answer);
    answer.catch(() => state.cache.delete(key));
  }
  return state.cache.get(key);
}

async function render() {
  const seq = ++state.seq;
  const view = state.view;
  const panel = $(`panel-${view}`);
  panel.setAttribute("aria-busy", "true");
  $("error").hidden = true;
  try {
    const shown = await VIEW[view]();
    // An answer to a question the controls no longer ask changes nothing on the page:
    // neither the panel nor the controls that depend on the answer (`apply`).
    if (seq !== state.seq) return;
    shown.apply?.();
    show(panel, shown);
  } catch (error) {
    if (seq !== state.seq) return;
    const { text, signIn } = describeError(error);
    if (signIn) return signOut(text);
    $("error").textContent = text;
    $("error").hidden = false;
  } finally {
    if (seq === state.seq) panel.removeAttribute("aria-busy");
  }
}

/** What every view's parts share: the measure, policy, and the words around them. */
function context(res, extra = {}) {
  return {
    m,
    measure: res.measure ?? measure(),
    policy: res.policy ?? state.catalog.policy,
    levelPlural: m.levelPlural(level()),
    breakdown: breakdown(),
    period: $("period").value,
    ...extra,
  };
}

function footnotes(policy, values) {
  const notes = [];
  const withheld = values.filter((v) => v && m.isSuppressed(v)).length;
  if (policy?.footnote) {
    notes.push(policy.footnote.startsWith("*") ? policy.footnote : `* ${policy.footnote}`);
  } else if (policy) {
    // No footnote from the server: say what its policy's numbers say.
    notes.push(
      `* Withheld to protect confidentiality. Counts are rounded to the nearest ${policy.roundTo || 1}` +
        (policy.minGroupSize ? `, and groups of fewer than ${policy.minGroupSize} people are withheld` : "") +
        (policy.noise ? "; counts carry a small, repeatable amount of noise" : "") +
        ". Values and confidence intervals are worked out from the released counts.",
    );
  }
  notes.push(withheld ? `${withheld} value${withheld === 1 ? " is" : "s are"} withheld (*) in this view.` : "No value is withheld in this view.");
  return notes;
}

function within() {
  const parent = state.areas.get($("parent").value);
  return parent ? ` in ${parent.name}` : "";
}

function finish({ heading, res, parts, csv, file, where, apply }) {
  const dataAsOf = res.dataAsOf || state.catalog.dataAsOf;
  return {
    apply,
    heading,
    meta: `${where} · Data as of ${dateText(dataAsOf)}`,
    parts,
    footnotes: footnotes(res.policy ?? state.catalog.policy, parts.values),
    onDownload: () =>
      download(
        `poplar-${file}.csv`,
        csvText(m.csvRows({ ...csv, policy: res.policy ?? state.catalog.policy, dataAsOf, areas: state.areas })),
      ),
  };
}

const VIEW = {
  async compare() {
    const x = measure();
    const period = $("period").value;
    const res = await ask("getValues", { measureId: x.id, level: level(), parentCode: $("parent").value, from: period, breakdown: breakdown() });
    const keys = [...new Set(res.values.map((v) => m.categoryKey(v)))];
    const labels = new Map(res.values.map((v) => [m.categoryKey(v), m.categoryLabel(v)]));
    const cells = breakdown().length ? keys.filter((k) => k !== "") : keys;
    const category = cells.includes(state.category) ? state.category : (cells[0] ?? "");
    const parts = compareView(context(res), res, category);
    return finish({
      apply: () => {
        state.category = category;
        options($("category"), cells.map((k) => [k, labels.get(k)]));
        $("category").value = category;
        $("category-control").hidden = breakdown().length === 0;
      },
      heading: `Compare areas: ${x.title}`,
      res,
      parts,
      where: `${m.levelPlural(level())}${within()} · ${period}`,
      csv: { measureOf: () => res.measure ?? x, values: res.values, comparator: res.comparator },
      file: `${x.id}-compare-${period}`,
    });
  },

  async trend() {
    const x = measure();
    const area = state.areas.get($("area").value);
    if (!area) throw new Error("Choose an area.");
    // No request names one area: ask for the areas the controls show (all of the level, or
    // those within the chosen parent, which is then the comparator) and keep the one.
    // Not area.parentCode by default: where the hierarchy is not nested (a PCN's practices
    // in two sub-ICBs), "within" a parent gives only part of an area.
    const res = await ask("getValues", { measureId: x.id, level: level(), parentCode: $("parent").value, from: $("from").value, to: $("period").value, breakdown: [] });
    const mine = { ...res, values: res.values.filter((v) => v.areaCode === area.code) };
    return finish({
      heading: `Trend: ${x.title}`,
      res,
      parts: trendView(context(res), mine),
      where: `${area.name} (${m.levelName(area.level)}) · ${$("from").value} to ${$("period").value}`,
      csv: { measureOf: () => res.measure ?? x, values: mine.values, comparator: res.comparator },
      file: `${x.id}-trend-${area.code}`,
    });
  },

  async funnel() {
    const x = measure();
    const period = $("period").value;
    const res = await ask("getFunnel", { measureId: x.id, level: level(), parentCode: $("parent").value, period });
    return finish({
      heading: `Funnel plot: ${x.title}`,
      res,
      parts: funnelView(context(res), res),
      where: `${m.levelPlural(level())}${within()} · ${period}`,
      csv: { measureOf: () => res.measure ?? x, values: res.values },
      file: `${x.id}-funnel-${period}`,
    });
  },

  async inequalities() {
    const x = measure();
    const area = state.areas.get($("area").value);
    if (!area) throw new Error("Choose an area.");
    // A view of inequalities needs a breakdown: without one chosen, the measure's first.
    const dims = breakdown().length ? breakdown() : x.dimensions.slice(0, 1);
    if (!dims.length) throw new Error("This measure has no breakdowns.");
    const period = $("period").value;
    const res = await ask("getValues", { measureId: x.id, level: level(), parentCode: $("parent").value, from: period, breakdown: dims });
    const mine = { ...res, values: res.values.filter((v) => v.areaCode === area.code) };
    return finish({
      heading: `Inequalities: ${x.title}`,
      res,
      parts: inequalitiesView(context(res, { breakdown: dims }), mine),
      where:
        `${area.name} (${m.levelName(area.level)}) · ${period}` +
        (breakdown().length ? "" : ` · by ${m.dimensionName(dims[0]).toLowerCase()} (no breakdown chosen)`),
      csv: { measureOf: () => res.measure ?? x, values: mine.values, comparator: res.comparator },
      file: `${x.id}-inequalities-${area.code}-${period}`,
    });
  },

  async profile() {
    const area = state.areas.get($("area").value);
    if (!area) throw new Error("Choose an area.");
    const period = $("period").value;
    const res = await ask("getAreaProfile", { areaCode: area.code, level: area.level, period });
    const values = res.rows.map((r) => r.value);
    const byValue = new Map();
    res.rows.forEach((r) => (byValue.set(r.value, r.measure), r.comparator && byValue.set(r.comparator, r.measure)));
    return finish({
      heading: `Area profile: ${area.name}`,
      res,
      parts: profileView(context(res), res),
      where: `${m.levelName(area.level)} · ${res.period?.label || period}`,
      csv: { measureOf: (v) => byValue.get(v), values, comparator: res.rows.map((r) => r.comparator).filter(Boolean) },
      file: `profile-${area.code}-${period}`,
    });
  },
};

function dateText(iso) {
  if (!iso) return "unknown";
  const d = new Date(`${iso}T00:00:00Z`);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleDateString("en-GB", { day: "numeric", month: "long", year: "numeric", timeZone: "UTC" });
}

resumeSignIn(signIn);
