// The dashboard as a person uses it: Debian's Chromium, headless, against a real
// `poplar serve` over a small synthetic region. It signs in with a wrong token and a real
// one, renders all five views, checks withheld cells against what the measures service
// itself answers, downloads the CSV, uses the tabs by keyboard, and fails on any console
// error or Content-Security-Policy violation. Screenshots of every view go to
// $POPLAR_SCREENSHOTS (default: a new temporary directory); their paths are printed.
//
// Run: POPLAR_BIN=path/to/poplar node --test ci/browser/dashboard.test.mjs
// (ci/test does this after `npm ci` of this directory into $POPLAR_NODE_DIR.)
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  BIN, CHROMIUM, ENV, TIMEOUT, chromium, launchPage, repo, rpc, startServer, stopServer as stopProcess, workspace,
} from "./lib.mjs";

// Fingertips' columns (its CSV API), as the dashboard's download must start.
const FINGERTIPS_COLUMNS = [
  "Indicator ID", "Indicator Name", "Parent Code", "Parent Name", "Area Code", "Area Name", "Area Type",
  "Sex", "Age", "Category Type", "Category", "Time period", "Value", "Lower CI 95.0 limit",
  "Upper CI 95.0 limit", "Lower CI 99.8 limit", "Upper CI 99.8 limit", "Count", "Denominator", "Value note",
];

const { work, screenshots, store, users, serverLog } = workspace("poplar-browser-");

const problems = []; // console errors, page errors, CSP violations: none may happen
let server, base, tokens, browser, page, service;
let chosenMeasure; // the measure the compare test picks; the later views keep it

function poplar(...args) {
  return execFileSync(BIN, args, { env: ENV, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

const serverFiles = () => ({ bin: BIN, env: ENV, store, users, log: serverLog });

async function stopServer() {
  await stopProcess(server);
  server = undefined;
}

/** The measures service, from Node, as the given user (see `rpc` above). */
async function serviceAs(token) {
  const bytes = new Uint8Array(await (await fetch(`${base}/poplar-descriptors.binpb`)).arrayBuffer());
  const registry = rpc.createFileRegistry(rpc.fromBinary(rpc.FileDescriptorSetSchema, bytes));
  const transport = rpc.createGrpcWebTransport({
    baseUrl: base,
    useBinaryFormat: true,
    interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
  });
  const names = (e) => Object.fromEntries(registry.getEnum(`poplar.measures.v1.${e}`).values.map((v) => [v.localName, v.number]));
  return {
    client: rpc.createClient(registry.getService("poplar.measures.v1.MeasuresService"), transport),
    Suppression: names("Suppression"),
    AreaLevel: names("AreaLevel"),
    Dimension: names("Dimension"),
  };
}

async function screenshot(name) {
  const file = path.join(screenshots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

/** Selects a view's tab by clicking and waits for its table. */
async function openView(view) {
  await page.click(`#tab-${view}`);
  return waitForView(view);
}

async function waitForView(view) {
  const panel = page.locator(`#panel-${view}`);
  await page.waitForFunction(
    (id) => {
      const p = document.getElementById(id);
      return !p.hidden && !p.hasAttribute("aria-busy") && (p.querySelector("table") || !document.getElementById("error").hidden);
    },
    `panel-${view}`,
    { timeout: TIMEOUT },
  );
  assert.equal(await page.locator("#error").isHidden(), true, `the ${view} view shows an error: ${await page.locator("#error").textContent()}`);
  return panel;
}

/** The text of each cell of a table's body, row by row. */
const tableCells = (panel) =>
  panel.locator("table tbody tr").evaluateAll((rows) => rows.map((r) => [...r.cells].map((c) => c.textContent.trim())));

/** The chart's text alternative: role=img with a label that says something. */
async function assertTextAlternative(panel) {
  const label = await panel.locator("figure [role=img]").first().getAttribute("aria-label");
  assert.ok(label && label.length > 30, `chart has a text alternative: ${label}`);
  assert.ok((await panel.locator("figure figcaption").textContent()).length > 20, "chart has a caption");
}

/** Every view shows the data's "as of" date and the policy's footnote. */
async function assertAsOfAndFootnote(panel, policy) {
  assert.ok(policy.footnote, "the service gives a footnote to print beside a *");
  assert.match(await panel.locator(".meta").textContent(), /Data as of \d{1,2} \w+ \d{4}/);
  const notes = await panel.locator(".footnote").allTextContents();
  assert.ok(notes.some((n) => n.includes(policy.footnote)), `the policy footnote is under the table: ${notes.join(" | ")}`);
}

/** Splits RFC 4180 CSV text into rows of fields. */
function parseCsv(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") row.push(field), (field = "");
    else if (c === "\n") row.push(field.replace(/\r$/, "")), rows.push(row), (row = []), (field = "");
    else field += c;
  }
  if (field || row.length) rows.push([...row, field]);
  return rows;
}

describe("the dashboard in headless Chromium", { timeout: 600_000 }, () => {
  before(async () => {
    assert.ok(BIN && fs.existsSync(BIN), "POPLAR_BIN must point at a built poplar binary (ci/test sets it)");
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing (apt-get install chromium; ci/lib.sh ensure_browser)`);
    // A region of 20 practices of ~75 people each: broken down by age band and sex, most
    // practice-level cells are small, so disclosure control withholds many.
    const region = path.join(work, "region");
    poplar("synth", "--patients", "1500", "--out", region, "--gp-practices", "20", "--acute-trusts", "2",
      "--mental-health-trusts", "1", "--community-providers", "2", "--social-care", "5",
      "--pilot-patients", "2000"); // a smaller calibration pilot, as the Python tests use
    poplar("load", "--registry", path.join(region, "sources.toml"), "--input", path.join(region, "deliveries"),
      "--store", store, "--report", path.join(work, "report.json"));
    tokens = {
      commissioner: poplar("users", "add", "cam", "--role", "commissioner", "--users", users).trim(),
      steward: poplar("users", "add", "sam", "--role", "steward", "--users", users).trim(),
    };
    ({ proc: server, base } = await startServer(serverFiles()));
    console.log(`server: ${base} (log ${serverLog})`);
    service = await serviceAs(tokens.commissioner);

    ({ browser, page } = await launchPage(chromium, CHROMIUM, problems, { timeout: TIMEOUT, acceptDownloads: true }));
  });

  after(async () => {
    await browser?.close();
    await stopServer();
    if (!process.env.POPLAR_KEEP_WORK) fs.rmSync(work, { recursive: true, force: true });
  });

  test("the page is served same-origin under a CSP that forbids inline script and style", async () => {
    const response = await page.goto(base);
    assert.equal(response.status(), 200);
    assert.match(response.headers()["content-type"] ?? "", /^text\/html/);
    const csp = response.headers()["content-security-policy"] ?? "";
    // Without these, "no CSP violation" below would prove nothing.
    for (const directive of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'"]) {
      assert.ok(csp.split(";").map((d) => d.trim()).includes(directive), `CSP has ${directive}: ${csp}`);
    }
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, "no inline script or style is allowed");
    for (const [file, type] of [["/app.js", /javascript/], ["/style.css", /^text\/css/], ["/vendor/plot.js", /javascript/]]) {
      const asset = await fetch(base + file);
      assert.equal(asset.status, 200, file);
      assert.match(asset.headers.get("content-type") ?? "", type, file);
      // The binary embeds dashboard/ when it is built: a stale build would test old files.
      assert.ok(Buffer.from(await asset.arrayBuffer()).equals(fs.readFileSync(path.join(repo, "dashboard", file))), `${file} as in dashboard/`);
    }
    await page.locator("#token").waitFor();
  });

  test("a wrong token shows an error and does not sign in", async () => {
    await page.fill("#token", "ppl_this-is-not-a-real-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    const error = page.locator("#sign-in-error");
    await error.waitFor({ state: "visible" });
    assert.match(await error.textContent(), /not accepted/);
    assert.equal(await page.locator("#app").isHidden(), true);
    assert.equal(await page.evaluate(() => sessionStorage.length + localStorage.length), 0, "a refused token is not kept");
  });

  test("the commissioner signs in; the token is kept for the tab only", async () => {
    await page.fill("#token", tokens.commissioner);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator("#app").waitFor({ state: "visible" });
    assert.match(await page.locator("#as-of").textContent(), /^Data as of \d{1,2} \w+ \d{4}$/);
    assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");
    assert.deepEqual(await page.evaluate(() => Object.values(sessionStorage)), [tokens.commissioner], "the token, in sessionStorage");
    assert.equal(await page.inputValue("#token"), "", "the password field is cleared");
    await waitForView("compare");
  });

  test("compare areas: withheld cells show * with the footnote, as the service answered", async () => {
    const { measures, policy } = await service.client.listMeasures({});
    // The first measure that can be broken down by age band and sex at practice level.
    const measure = measures.find((x) =>
      [service.Dimension.AGE_BAND, service.Dimension.SEX].every((d) => x.dimensions.includes(d)) &&
      (x.levels.length === 0 || x.levels.includes(service.AreaLevel.PRACTICE)));
    assert.ok(measure, "some measure breaks down by age band and sex");
    chosenMeasure = measure;
    await page.selectOption("#measure", measure.id);
    await page.selectOption("#level", String(service.AreaLevel.PRACTICE));
    await page.selectOption("#parent", "");
    await page.selectOption("#breakdown1", String(service.Dimension.AGE_BAND));
    await page.selectOption("#breakdown2", String(service.Dimension.SEX));
    // The page's question, asked here too (while the page waits for its answer).
    const period = await page.inputValue("#period");
    const [answer, panel] = await Promise.all([
      service.client.getValues({
        measureId: measure.id, level: service.AreaLevel.PRACTICE, parentCode: "", from: period,
        breakdown: [service.Dimension.AGE_BAND, service.Dimension.SEX],
      }),
      waitForView("compare"),
    ]);
    await page.locator("#category-control").waitFor({ state: "visible" });
    // Try each group until one has both withheld and released practices (most will).
    const groups = await page.locator("#category option").evaluateAll((os) => os.map((o) => o.value));
    let chosen, withheld, released, rows;
    for (const group of groups) {
      await page.selectOption("#category", group);
      await waitForView("compare");
      const inGroup = answer.values.filter((v) => v.categories.map((c) => `${c.dimension}:${c.code}`).join("|") === group);
      withheld = inGroup.filter((v) => v.suppression !== service.Suppression.NONE);
      released = inGroup.filter((v) => v.suppression === service.Suppression.NONE);
      rows = await tableCells(panel);
      assert.equal(rows.length, inGroup.length, `one table row per practice in group ${group}`);
      if (withheld.length && released.length) { chosen = group; break; }
    }
    assert.ok(chosen, "some age-sex group has both withheld and released practices");
    // Value, Lower, Upper, Count, Denominator are columns 1..5 (0 is the area).
    const starred = rows.filter((r) => r[1].startsWith("*"));
    assert.equal(starred.length, withheld.length, "every withheld value, and only those, shows *");
    for (const r of starred) {
      assert.ok(r.slice(1, 6).every((c) => c.startsWith("*")), `a withheld row shows * for value, CI and counts: ${r}`);
      assert.ok(r.at(-1).length > 0, `a withheld row says why: ${r}`);
    }
    for (const r of rows.filter((r) => !r[1].startsWith("*"))) {
      assert.match(r[1], /^\d[\d,]*(\.\d+)?$/, `a released value is a number: ${r}`);
    }
    for (const v of withheld) {
      const row = rows.find((r) => r[0].includes(`(${v.areaCode})`));
      assert.ok(row && row[1].startsWith("*"), `${v.areaCode} is withheld by the service and shows *`);
    }
    await assertAsOfAndFootnote(panel, policy);
    await assertTextAlternative(panel);
    assert.equal(await panel.locator("g.mark-values rect").count(), released.length, "one bar per released value");
    assert.equal(await panel.locator("g.mark-withheld text").count(), withheld.length, "a * in the chart per withheld value");
    assert.ok(await panel.locator("thead th[scope=col]").count() >= 6, "column headers have scope");
    assert.ok(await panel.locator("tbody th[scope=row]").count() === rows.length, "row headers have scope");
    await screenshot("1-compare-areas");

    // The CSV of the view: Fingertips' columns, and withheld rows with no numbers and a note.
    const [download] = await Promise.all([page.waitForEvent("download"), panel.getByRole("button", { name: /Download CSV/ }).click()]);
    const csv = parseCsv(fs.readFileSync(await download.path(), "utf8"));
    const [header, ...body] = csv;
    assert.deepEqual(header.slice(0, FINGERTIPS_COLUMNS.length), FINGERTIPS_COLUMNS);
    const col = (name) => header.indexOf(name);
    assert.equal(body.length, answer.values.length + answer.comparator.length, "a row per value and per comparator value");
    // A breakdown's answer has every cell and its margins (age only, sex only, the total):
    // in Fingertips' columns a missing dimension is Sex "Persons" or Age "All ages".
    const label = (v, d, none) => v.categories.find((c) => c.dimension === d)?.label ?? none;
    const csvKey = (area, sex, age) => `${area}|${sex}|${age}`;
    const byCell = new Map(answer.values.map((v) => [
      csvKey(v.areaCode, label(v, service.Dimension.SEX, "Persons"), label(v, service.Dimension.AGE_BAND, "All ages")), v]));
    assert.equal(byCell.size, answer.values.length, "each value has its own Area, Sex and Age");
    let checkedWithheld = 0;
    for (const row of body.slice(0, answer.values.length)) {
      const v = byCell.get(csvKey(row[col("Area Code")], row[col("Sex")], row[col("Age")]));
      assert.ok(v, `CSV row matches a value the service sent: ${row}`);
      assert.equal(row[col("Indicator ID")], measure.id);
      assert.equal(row[col("Time period")], v.period.label);
      if (v.suppression !== service.Suppression.NONE) {
        checkedWithheld++;
        for (const c of ["Value", "Count", "Denominator", "Lower CI 95.0 limit", "Upper CI 95.0 limit"]) assert.equal(row[col(c)], "", `${c} empty when withheld: ${row}`);
        assert.ok(row[col("Value note")].length > 0, `withheld row has a note: ${row}`);
      } else {
        assert.equal(Number(row[col("Value")]), v.value, `released value as sent: ${row}`);
        assert.equal(row[col("Count")], String(v.numerator));
        assert.equal(row[col("Denominator")], String(v.denominator));
      }
    }
    assert.ok(checkedWithheld > 0, "the CSV has withheld rows");
    console.log(`compare: group ${chosen}: ${withheld.length} withheld, ${released.length} released; CSV ${body.length} rows, ${checkedWithheld} withheld`);
  });

  test("funnel plot: the areas, the target and the 95% and 99.8% limit curves", async () => {
    const panel = await openView("funnel"); // still every practice
    for (const curve of ["lower-95-limit", "upper-95-limit", "lower-99-8-limit", "upper-99-8-limit"]) {
      const d = await panel.locator(`g.mark-${curve} path`).first().getAttribute("d", { timeout: 5_000 });
      // A curve, not a point: many segments.
      assert.ok(d && d.split(/[LC]/).length > 10, `the ${curve} curve is drawn: ${d?.slice(0, 80)}`);
    }
    assert.equal(await panel.locator("g.mark-target line").count(), 1, "the target line is drawn");
    const rows = await tableCells(panel);
    const plotted = rows.filter((r) => !r[1].startsWith("*")).length;
    assert.equal(rows.length, (await service.client.listAreas({ level: service.AreaLevel.PRACTICE })).areas.length, "a row per practice");
    assert.equal(await panel.locator("g.mark-areas circle").count(), plotted, "a dot per released area");
    await assertTextAlternative(panel);
    await assertAsOfAndFootnote(panel, (await service.client.listMeasures({})).policy);
    await screenshot("2-funnel");
  });

  test("trend: a line, its 95% CI band and the comparator over a range of periods", async () => {
    // Practices of ~75 people are mostly withheld; a primary care network's trend is not.
    // The level is changed before the tab is opened (on the funnel, where it costs little),
    // so the page asks for one trend, and this test the same one, at the same time.
    await page.selectOption("#level", String(service.AreaLevel.PCN));
    await page.selectOption("#parent", "");
    await waitForView("funnel");
    await page.click("#tab-trend");
    const from = await page.inputValue("#from"), to = await page.inputValue("#period");
    const periods = await page.locator("#period option").evaluateAll((os) => os.map((o) => o.value).reverse());
    const expected = periods.slice(periods.indexOf(from), periods.indexOf(to) + 1);
    const [answer] = await Promise.all([
      service.client.getValues({ measureId: chosenMeasure.id, level: service.AreaLevel.PCN, parentCode: "", from, to, breakdown: [] }),
      waitForView("trend"),
    ]);
    // The first network the service releases two values or more for.
    const released = (code) => answer.values.filter((v) => v.areaCode === code && v.suppression === service.Suppression.NONE);
    const area = (await service.client.listAreas({ level: service.AreaLevel.PCN })).areas.find((a) => released(a.code).length >= 2);
    assert.ok(area, "some PCN has a trend of two or more released values");
    await page.selectOption("#area", area.code); // the same answer: no new question
    const panel = await waitForView("trend");
    const rows = await tableCells(panel);
    assert.deepEqual(rows.map((r) => r[0]), expected, "a row per period from From to To");
    const mine = answer.values.filter((v) => v.areaCode === area.code);
    for (const v of mine) {
      const row = rows.find((r) => r[0] === v.period.label);
      assert.equal(row[1].startsWith("*"), v.suppression !== service.Suppression.NONE, `${v.period.label}: * exactly when withheld`);
    }
    assert.equal(await panel.locator("g.mark-value path").count(), 1, "the line is drawn");
    assert.ok(await panel.locator("g.mark-95-confidence-interval path").count() >= 1, "the CI band is drawn");
    assert.equal(await panel.locator("g.mark-values circle").count(), mine.filter((v) => v.suppression === service.Suppression.NONE).length);
    const comparator = answer.comparator.filter((c) => c.suppression === service.Suppression.NONE);
    if (comparator.length >= 2) assert.equal(await panel.locator("g.mark-comparator path").count(), 1, "the comparator line is drawn");
    await assertTextAlternative(panel);
    await assertAsOfAndFootnote(panel, (await service.client.listMeasures({})).policy);
    await screenshot("3-trend");
  });

  test("inequalities: one area broken down, bars with CIs by group", async () => {
    // Choosing the breakdown straight after opening the tab drops the page's first question.
    await page.click("#tab-inequalities");
    await page.selectOption("#breakdown1", String(service.Dimension.SEX));
    const code = await page.inputValue("#area");
    const [answer, panel] = await Promise.all([
      service.client.getValues({
        measureId: chosenMeasure.id, level: service.AreaLevel.PCN, parentCode: "",
        from: await page.inputValue("#period"), breakdown: [service.Dimension.SEX],
      }),
      waitForView("inequalities"),
    ]);
    const groups = answer.values.filter((v) => v.areaCode === code && v.categories.length > 0);
    const rows = await tableCells(panel);
    assert.ok(groups.length > 1, "the service answers more than one group");
    assert.deepEqual(rows.map((r) => r[0]), groups.map((v) => v.categories.map((c) => c.label).join(", ")), "a row per sex");
    const released = groups.filter((v) => v.suppression === service.Suppression.NONE).length;
    assert.equal(rows.filter((r) => !r[1].startsWith("*")).length, released, "* exactly for the withheld groups");
    assert.equal(await panel.locator("g.mark-values rect").count(), released, "a bar per released group");
    await assertTextAlternative(panel);
    await assertAsOfAndFootnote(panel, (await service.client.listMeasures({})).policy);
    await screenshot("4-inequalities");
  });

  test("area profile: every measure for one area, with a spine chart per row", async () => {
    const panel = await openView("profile");
    const { measures, policy } = await service.client.listMeasures({});
    const rows = await tableCells(panel);
    assert.equal(rows.length, measures.length, "a row per measure");
    assert.equal(await panel.locator("svg.spine[role=img][aria-label]").count() + await panel.locator("td:has-text('Not enough released values')").count(), measures.length);
    await assertAsOfAndFootnote(panel, policy);
    await screenshot("5-area-profile");
  });

  test("keyboard alone: Tab reaches the view tabs, arrow keys switch views", async () => {
    // Start where a keyboard user starts reading: the page's heading (a click on it sets
    // where the next Tab goes from, and focuses nothing).
    await page.click("h1");
    let onTab = false;
    for (let i = 0; i < 40 && !onTab; i++) {
      await page.keyboard.press("Tab");
      onTab = await page.evaluate(() => document.activeElement?.getAttribute("role") === "tab");
    }
    assert.ok(onTab, "Tab reaches the tab list");
    const focused = () => page.evaluate(() => document.activeElement.id);
    // Only the selected tab (still the area profile) is in the Tab order: a roving tabindex.
    assert.equal(await focused(), "tab-profile");
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, "none", "the focused tab shows where focus is");
    await page.keyboard.press("ArrowRight"); // from the last, round to the first
    await waitForView("compare");
    assert.equal(await focused(), "tab-compare");
    await page.keyboard.press("ArrowRight");
    await waitForView("trend");
    assert.equal(await focused(), "tab-trend");
    assert.equal(await page.getAttribute("#tab-trend", "aria-selected"), "true");
    assert.equal(await page.getAttribute("#tab-compare", "aria-selected"), "false");
    assert.equal(await page.locator("#panel-compare").isHidden(), true);
    await page.keyboard.press("ArrowLeft");
    await waitForView("compare");
    assert.equal(await focused(), "tab-compare");
    await page.keyboard.press("End");
    await waitForView("profile");
    assert.equal(await focused(), "tab-profile");
    await page.keyboard.press("Home");
    await waitForView("compare");
    assert.equal(await focused(), "tab-compare");
  });

  test("signing out forgets the token; the steward can then sign in", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.locator("#sign-in").waitFor({ state: "visible" });
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.equal(await page.locator("#app").isHidden(), true);
    await page.fill("#token", tokens.steward);
    await page.keyboard.press("Enter");
    await page.locator("#app").waitFor({ state: "visible" });
    await waitForView("compare");
  });

  test("a spent daily budget is explained on the page", async () => {
    // The same store again, with the commissioners' daily budget cut below what this test
    // has already asked: the server re-reads today's answers from the audit log at start.
    await stopServer();
    const disclosure = path.join(work, "disclosure.toml");
    fs.writeFileSync(disclosure, "[daily_budget]\ncommissioner = 1\n");
    ({ proc: server, base } = await startServer(serverFiles(), "--disclosure", disclosure));
    await page.goto(base); // a new port is a new origin: nothing is signed in
    await page.fill("#token", tokens.commissioner);
    await page.getByRole("button", { name: "Sign in" }).click();
    // Refused at sign-in (if listing the catalogue is charged) or at the first view.
    const refusal = page.locator("#sign-in-error:visible, #error:visible");
    await refusal.first().waitFor({ timeout: TIMEOUT });
    const text = await refusal.first().textContent();
    assert.match(text, /A limit was reached/, `the page names the refusal: ${text}`);
    assert.match(text, /budget|answers/i, `and gives the server's reason: ${text}`);
    await screenshot("6-budget-spent");
  });

  test("no console error, page error or CSP violation happened", async () => {
    const violations = await page.evaluate(() => window.__cspViolations);
    assert.deepEqual([...problems, ...violations.map((v) => `CSP: ${v}`)], []);
  });
});
