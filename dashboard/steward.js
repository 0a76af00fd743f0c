// The stewards' console: the review queue, output checking, feed status per source,
// opt-outs, the audit log and the users, from `poplar.studies.v1` and
// `poplar.governance.v1` over gRPC-Web with the signed-in user's token. The server decides
// who may see and do what (stewards only; never the author of a study or the researcher
// of a run); this page only asks and shows, and shows a refusal in the server's words.
import { connectConsole, describeError } from "./api.js";
import { resumeSignIn, signedIn, signedOut, signInError, tabList, wireSignIn } from "./shell.js";
import { h } from "./views.js";

const $ = (id) => document.getElementById(id);
const PAGES = ["queue", "outputs", "feeds", "optouts", "audit", "users"];
const DAY_MS = 86_400_000;

let api = null; // {studies, governance, enums}
let state = fresh();

function fresh() {
  return { token: "", page: "queue", seq: 0, lastOptOut: null, audit: null, verified: null };
}

// ---- sign-in -------------------------------------------------------------------------

wireSignIn(signIn, signOut);

async function signIn(token) {
  if (!token) return signInError("Enter your access token.");
  signInError("");
  state.token = token;
  try {
    api ??= await connectConsole(() => state.token);
    // The first call is the server's answer to "is this a steward?": anyone else is
    // refused there, and sees the refusal, not the console.
    await api.governance.listUsers({});
  } catch (error) {
    state = fresh();
    signedOut();
    return signInError(describeError(error).text);
  }
  signedIn(token);
  selectPage(state.page, false);
}

function signOut(message = "") {
  state = fresh();
  for (const page of PAGES) $(`panel-${page}`).replaceChildren();
  $("notice").hidden = true;
  signedOut(message);
}

// ---- tabs ----------------------------------------------------------------------------

const selectPage = tabList(PAGES, () => state.page, (page) => {
  state.page = page;
  $("notice").hidden = true;
  render();
});

// ---- asking and showing --------------------------------------------------------------

async function render() {
  const seq = ++state.seq;
  const page = state.page;
  const panel = $(`panel-${page}`);
  panel.setAttribute("aria-busy", "true");
  $("error").hidden = true;
  try {
    const children = await PAGE[page]();
    if (seq !== state.seq) return;
    panel.replaceChildren(...children.flat().filter(Boolean));
  } catch (error) {
    if (seq !== state.seq) return;
    showError(error);
  } finally {
    if (seq === state.seq) panel.removeAttribute("aria-busy");
  }
}

function showError(error) {
  const { text, signIn } = describeError(error);
  if (signIn) return signOut(text);
  $("error").textContent = text;
  $("error").hidden = false;
}

function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = false;
}

/** Runs a steward's action, then shows what it did and the page afresh; a refusal is shown
 * in the server's words and changes nothing on the page. */
async function act(call, done) {
  $("error").hidden = true;
  $("notice").hidden = true;
  try {
    const said = done(await call());
    await render();
    notice(said);
  } catch (error) {
    showError(error);
  }
}

const text = (x) => (x === undefined || x === null ? "" : String(x));
const when = (iso) => (iso ? iso.replace("T", " ").replace(/(\.\d+)?Z$/, " UTC") : "");
const heading = (title, meta) => [h("h2", {}, title), meta && h("p", { class: "meta" }, meta)];
const field = (label, input) => h("div", { class: "field" }, h("label", { for: input.id }, label), input);
let ids = 0;
const uid = (prefix) => `${prefix}-${++ids}`;

/** A table with column headers (scope=col) and, if `rowHeader`, the first cell a row header. */
function table(caption, columns, rows, { rowHeader = true, rowClass } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : undefined }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            { class: rowClass?.(row) },
            columns.map((c, i) =>
              i === 0 && rowHeader
                ? h("th", { scope: "row" }, c.value(row))
                : h("td", { class: c.num ? "num" : undefined }, c.value(row)),
            ),
          ),
        ),
      ),
    ),
  );
}

function parameterRows(study) {
  const { ParameterType } = api.enums;
  return study.parameters.map((p, i) => ({
    n: `$${i + 1}`,
    name: p.name,
    type: ParameterType.nameOf(p.type).toLowerCase().replace("_", " "),
    allowed: p.options.length ? p.options.join(", ") : [p.min && `from ${p.min}`, p.max && `to ${p.max}`].filter(Boolean).join(" "),
  }));
}

const PARAMETER_COLUMNS = [
  { label: "Placeholder", value: (p) => p.n },
  { label: "Name", value: (p) => p.name },
  { label: "Type", value: (p) => p.type },
  { label: "Allowed values", value: (p) => p.allowed },
];

// ---- the pages -----------------------------------------------------------------------

const PAGE = {
  async queue() {
    const { StudyState, Decision } = api.enums;
    const { studies } = await api.studies.list({});
    const pending = studies.filter((s) => s.state === StudyState.SUBMITTED);
    const others = studies.filter((s) => s.state !== StudyState.SUBMITTED);
    const review = (study) => {
      const quota = h("input", { type: "number", id: uid("quota"), min: "1", value: "5", class: "short" });
      const days = h("input", { type: "number", id: uid("days"), min: "1", value: "90", class: "short" });
      const comments = h("textarea", { id: uid("comments"), rows: "3" });
      const decide = (decision, label) =>
        h("button", {
          type: "button",
          onclick: () =>
            act(() => api.studies.review({
              studyId: study.studyId,
              decision,
              comments: comments.value,
              runQuota: Number(quota.value),
              expiresAt: decision === Decision.APPROVE ? new Date(Date.now() + Number(days.value) * DAY_MS).toISOString() : "",
            }), (s) => `${study.studyId}: ${label.toLowerCase()} — the study is now ${StudyState.nameOf(s.state).toLowerCase()}` +
              (s.state === StudyState.SUBMITTED ? ` (${s.approvals.length} of ${s.approvalsRequired} approvals)` : "")),
        }, label);
      return h(
        "form",
        { class: "decision", "aria-label": `Review ${study.title}` },
        field("Runs allowed", quota),
        field("Approval lasts (days)", days),
        field("Comments for the author", comments),
        h("div", { class: "buttons" }, decide(Decision.APPROVE, "Approve"), decide(Decision.RETURN, "Return with comments"), decide(Decision.REJECT, "Reject")),
      );
    };
    const card = (s) =>
      h(
        "article",
        { class: "card", "data-study": s.studyId },
        h("h3", {}, s.title),
        h("p", { class: "meta" },
          `${s.studyId} · by ${s.author} · submitted ${when(s.history.findLast((e) => e.action === "submit")?.at)} · ` +
            `approvals ${s.approvals.length} of ${s.approvalsRequired}` +
            (s.approvals.length ? ` (by ${s.approvals.map((a) => a.by).join(", ")})` : "")),
        h("dl", { class: "facts" },
          h("dt", {}, "Purpose"), h("dd", {}, s.purpose),
          h("dt", {}, "Outputs wanted"), h("dd", {}, s.outputs)),
        h("h4", {}, "SQL ", h("span", { class: "meta" }, `(SHA-256 ${s.sqlSha256})`)),
        h("pre", { class: "sql" }, h("code", {}, s.sql)),
        s.parameters.length ? table("Parameters", PARAMETER_COLUMNS, parameterRows(s)) : h("p", {}, "No parameters."),
        s.history.length > 1 &&
          h("details", {}, h("summary", {}, "History"),
            h("ul", {}, s.history.map((e) => h("li", {}, `${when(e.at)} ${e.action} by ${e.by}${e.comments ? `: ${e.comments}` : ""}`)))),
        review(s),
      );
    return [
      heading("Review queue", `${pending.length} ${pending.length === 1 ? "study waits" : "studies wait"} for review. No one may review their own study.`),
      pending.length ? pending.map(card) : h("p", { class: "empty" }, "No study waits for review."),
      others.length &&
        table("Other studies", [
          { label: "Study", value: (s) => s.studyId },
          { label: "Title", value: (s) => s.title },
          { label: "Author", value: (s) => s.author },
          { label: "State", value: (s) => StudyState.nameOf(s.state).toLowerCase() },
          { label: "Runs used", value: (s) => `${s.runsUsed}${s.bound ? ` of ${s.bound.runQuota}` : ""}`, num: true },
          { label: "Approval ends", value: (s) => when(s.bound?.expiresAt) },
        ], others),
    ];
  },

  async outputs() {
    const { OutputState, OutputDecision, Format } = api.enums;
    const { studies } = await api.studies.list({});
    const runs = studies.flatMap((s) => s.runs.map((r) => ({ s, r })));
    const held = runs.filter(({ r }) => r.state === OutputState.HELD);
    const decided = runs.filter(({ r }) => r.state === OutputState.RELEASED || r.state === OutputState.WITHHELD);
    const card = ({ s, r }) => {
      const sum = r.summary ?? {};
      const preview = h("div", { class: "preview" });
      const comments = h("textarea", { id: uid("check-comments"), rows: "2" });
      const check = (decision, label) =>
        h("button", {
          type: "button",
          onclick: () =>
            act(() => api.studies.checkOutput({ runId: r.runId, decision, comments: comments.value }),
              (run) => `${r.runId}: ${label.toLowerCase()} — the output is now ${OutputState.nameOf(run.state).toLowerCase()}` +
                (run.state === OutputState.HELD ? ` (${run.checks.length} of ${run.checksRequired} releases)` : "")),
        }, label);
      const later = r.pin?.laterOptouts ?? [];
      return h(
        "article",
        { class: "card", "data-run": r.runId },
        h("h3", {}, `${r.runId}: ${s.title}`),
        h("p", { class: "meta" }, `run by ${r.runBy} · ${when(r.at)} · snapshot ${text(r.pin?.snapshot)} · ` +
          Object.entries(r.parameters).map(([k, v]) => `${k} = ${v}`).join(", ")),
        later.length ? h("p", { class: "warning" }, `Opt-outs were applied after this run's snapshot (snapshots ${later.join(", ")}).`) : null,
        h("dl", { class: "facts summary" },
          h("dt", {}, "Rows"), h("dd", {}, text(sum.rows)),
          h("dt", {}, "Cells suppressed"), h("dd", {}, text(sum.cellsSuppressed)),
          h("dt", {}, "Smallest count released"), h("dd", {}, sum.smallestCount === undefined ? "none" : text(sum.smallestCount)),
          h("dt", {}, "Rounding check"), h("dd", {}, sum.countsRounded ? `every count is a multiple of ${sum.roundTo}` : `NOT every count is a multiple of ${sum.roundTo}`),
          h("dt", {}, "Columns to look at closely"), h("dd", {}, sum.unprotectedColumns?.length ? sum.unprotectedColumns.join(", ") : "none (every column is a released aggregate or a key)"),
          sum.sameAsReleasedRun ? [h("dt", {}, "Identical to"), h("dd", {}, `released run ${sum.sameAsReleasedRun}`)] : null,
          h("dt", {}, "Checks"), h("dd", {}, `${r.checks.filter((c) => c.decision === OutputDecision.RELEASE).length} of ${r.checksRequired} releases` +
            (r.checks.length ? ` (${r.checks.map((c) => c.by).join(", ")})` : ""))),
        h("button", {
          type: "button",
          class: "show-output",
          onclick: async () => {
            try {
              const { data } = await api.studies.fetch({ runId: r.runId, format: Format.CSV });
              preview.replaceChildren(csvTable(`Output of ${r.runId}`, new TextDecoder().decode(data)));
            } catch (error) {
              showError(error);
            }
          },
        }, "Show the output"),
        preview,
        h("form", { class: "decision", "aria-label": `Check ${r.runId}` },
          field("Comments", comments),
          h("div", { class: "buttons" }, check(OutputDecision.RELEASE, "Release"), check(OutputDecision.WITHHOLD, "Withhold"))),
      );
    };
    return [
      heading("Output checking", `${held.length} held ${held.length === 1 ? "output waits" : "outputs wait"} for a check. No one checks the output of their own run.`),
      held.length ? held.map(card) : h("p", { class: "empty" }, "No output is held."),
      decided.length &&
        table("Checked outputs", [
          { label: "Run", value: ({ r }) => r.runId },
          { label: "Study", value: ({ s }) => s.title },
          { label: "Researcher", value: ({ r }) => r.runBy },
          { label: "Decision", value: ({ r }) => OutputState.nameOf(r.state).toLowerCase() },
          { label: "Checked by", value: ({ r }) => r.checkedBy },
          { label: "Comments", value: ({ r }) => r.checkComments },
        ], decided),
    ];
  },

  async feeds() {
    const days = h("input", { type: "number", id: "late-after", min: "1", value: String(state.lateAfter ?? 45), class: "short" });
    const res = await api.governance.feedStatus({ lateAfterDays: Number(days.value) });
    const late = res.feeds.filter((f) => f.late);
    const feeds = [...late, ...res.feeds.filter((f) => !f.late)];
    const days_ = (n) => (Number(n) < 0 ? "never" : text(n));
    return [
      heading("Feed status", `Data as of ${res.dataAsOf || "unknown"}. ${late.length} of ${res.feeds.length} sources late: their newest period ends more than ${res.lateAfterDays} days before the region's newest.`),
      h("form", { class: "inline", "aria-label": "Lateness", onsubmit: (e) => (e.preventDefault(), (state.lateAfter = Number(days.value)), render()) },
        field("Late after (days)", days), h("button", { type: "submit" }, "Show")),
      table("Feeds by source", [
        { label: "Source", value: (f) => f.sourceOrg },
        { label: "Status", value: (f) => (f.late ? h("strong", { class: "late-flag" }, "Late") : "On time") },
        { label: "Last delivery", value: (f) => f.lastDelivery || "none" },
        { label: "Loaded", value: (f) => f.lastLoadedAt },
        { label: "Period covered", value: (f) => (f.periodStart ? `${f.periodStart} to ${f.periodEnd}` : "") },
        { label: "Deliveries landed", value: (f) => text(f.deliveriesLanded), num: true },
        { label: "Rejected", value: (f) => text(f.deliveriesRejected), num: true },
        { label: "Rows landed", value: (f) => Number(f.rowsLanded).toLocaleString("en-GB"), num: true },
        { label: "Quarantined (by reason)", value: (f) => f.quarantined.map((q) => `${q.reason}: ${q.rows}`).join("; ") || "none" },
        { label: "Days since last delivery", value: (f) => days_(f.daysSinceLastDelivery), num: true },
        { label: "Days behind the region", value: (f) => days_(f.daysBehind), num: true },
      ], feeds, { rowClass: (f) => (f.late ? "late" : undefined) }),
    ];
  },

  async optouts() {
    const res = await api.governance.optOuts({});
    const list = h("textarea", { id: "optout-list", rows: "6", autocomplete: "off", spellcheck: "false" });
    const file = h("input", { type: "file", id: "optout-file", accept: ".txt,.csv,text/plain,text/csv" });
    const apply = async (event) => {
      event.preventDefault();
      const numbers = file.files?.[0] ? await file.files[0].text() : list.value;
      list.value = "";
      file.value = "";
      if (!numbers.trim()) return showError(new Error("Paste NHS numbers or choose a file first."));
      await act(() => api.governance.applyOptOut({ nhsNumbers: numbers }), (r) => {
        state.lastOptOut = r;
        return `Opt-out applied: ${r.newlyOptedOut} newly opted out, ${r.alreadyRecorded} already recorded, ${r.invalidEntries} not valid NHS numbers.`;
      });
    };
    const last = state.lastOptOut;
    return [
      heading("Opt-outs", `${res.people} people are recorded as opted out; ${res.applications.length} ${res.applications.length === 1 ? "application" : "applications"}.`),
      last &&
        h("section", { class: "result", "aria-label": "Last opt-out applied" },
          h("h3", {}, "Last applied from this page"),
          h("dl", { class: "facts" },
            h("dt", {}, "Newly opted out"), h("dd", {}, text(last.newlyOptedOut)),
            h("dt", {}, "Already recorded"), h("dd", {}, text(last.alreadyRecorded)),
            h("dt", {}, "Not valid NHS numbers"), h("dd", {}, text(last.invalidEntries)),
            h("dt", {}, "Snapshot"), h("dd", {}, Number(last.snapshot) ? text(last.snapshot) : "none (nothing to remove)"),
            last.rowsRemoved.flatMap((r) => [h("dt", {}, `Rows removed from ${r.table}`), h("dd", {}, text(r.rows))]))),
      res.applications.length
        ? table("Applications", [
            { label: "Snapshot", value: (a) => text(a.snapshot) },
            { label: "Applied at", value: (a) => a.at },
            { label: "Run", value: (a) => a.runId },
          ], res.applications)
        : h("p", {}, "No opt-out has been applied."),
      h("form", { class: "decision", id: "optout-form", "aria-label": "Apply an opt-out list", onsubmit: apply },
        h("h3", {}, "Apply an opt-out list"),
        h("p", {}, "NHS numbers, one a line. They go to the server once, are turned into pseudonyms there, and are neither kept nor shown again: the answer is counts only."),
        field("NHS numbers", list),
        field("or a file of them", file),
        h("div", { class: "buttons" }, h("button", { type: "submit" }, "Apply opt-out list"))),
    ];
  },

  async audit() {
    const q = state.audit ?? { user: "", kind: "", outcome: "", rule: "", contains: "", limit: 100 };
    const input = (name, label) => field(label, h("input", { type: "text", id: `audit-${name}`, name, value: q[name] }));
    const select = (name, label, values) => {
      const s = h("select", { id: `audit-${name}`, name }, ["", ...values].map((v) => h("option", { value: v }, v || "any")));
      s.value = q[name];
      return field(label, s);
    };
    const form = h("form", { class: "inline", id: "audit-form", "aria-label": "Search the audit log" },
      input("user", "User"),
      select("kind", "Kind", ["sql", "measure", "study", "call", "sign_in"]),
      select("outcome", "Outcome", ["answered", "refused", "failed", "started", "cancelled"]),
      input("rule", "Rule"),
      input("contains", "Request contains"),
      h("div", { class: "buttons" }, h("button", { type: "submit" }, "Search")));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const data = new FormData(form);
      state.audit = { ...Object.fromEntries(["user", "kind", "outcome", "rule", "contains"].map((k) => [k, String(data.get(k) ?? "")])), limit: 100 };
      render();
    });
    const verify = h("button", {
      type: "button",
      id: "verify-audit",
      onclick: () => act(() => api.governance.verifyAudit({}), (v) => {
        state.verified = v;
        return v.ok ? "The audit chain verifies." : "The audit chain does NOT verify.";
      }),
    }, "Verify the chain");
    const { entries } = await api.governance.searchAudit(q);
    const v = state.verified;
    return [
      heading("Audit", "Every request, newest first. Verification checks every entry's hash against the one before it."),
      h("div", { class: "verify" }, verify,
        v && h("p", { class: v.ok ? "ok" : "error", id: "verify-result" },
          v.ok ? `Verified: ${v.entriesChecked} entries, head ${v.headSeq} (hash ${v.headHash.slice(0, 16)}…).`
            : `Not verified after ${v.entriesChecked} entries: ${v.problems.join("; ")}`)),
      form,
      table(`${entries.length} ${entries.length === 1 ? "entry" : "entries"}`, [
        { label: "Seq", value: (e) => text(e.seq), num: true },
        { label: "At", value: (e) => when(e.at) },
        { label: "User", value: (e) => e.user },
        { label: "Role", value: (e) => e.role },
        { label: "Kind", value: (e) => e.kind },
        { label: "Request", value: (e) => h("code", { class: "request" }, e.request) },
        { label: "Outcome", value: (e) => e.outcome },
        { label: "Rule", value: (e) => e.rule },
        { label: "Rows", value: (e) => text(e.rows), num: true },
        { label: "Cells suppressed", value: (e) => text(e.cellsSuppressed), num: true },
      ], entries),
    ];
  },

  async users() {
    const { users } = await api.governance.listUsers({});
    return [
      heading("Users", `${users.length} users. Tokens are never shown: the server keeps only their hashes.`),
      table("Users and roles", [
        { label: "Name", value: (u) => u.name },
        { label: "Role", value: (u) => u.role },
      ], users),
    ];
  },
};

/** A study output's CSV (as the server wrote it: a header, no quoted newlines) as a table. */
function csvTable(caption, csv) {
  const split = (line) => {
    const cells = [];
    let cell = "", quoted = false;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (quoted) {
        if (c === '"' && line[i + 1] === '"') (cell += '"'), i++;
        else if (c === '"') quoted = false;
        else cell += c;
      } else if (c === '"') quoted = true;
      else if (c === ",") cells.push(cell), (cell = "");
      else cell += c;
    }
    return [...cells, cell];
  };
  const [header, ...rows] = csv.split("\n").filter((l) => l !== "").map(split);
  return table(caption, (header ?? []).map((label, i) => ({ label, value: (row) => (row[i] === "" && i > 0 ? "*" : row[i]), num: i > 0 })), rows, { rowHeader: true });
}

resumeSignIn(signIn);
