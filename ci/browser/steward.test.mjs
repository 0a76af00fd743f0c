// The stewards' console as a steward uses it: Debian's Chromium, headless, against a real
// `poplar serve` over a small synthetic region in which one practice stopped delivering.
// A researcher submits a study and runs it with the `poplar studies` command line; a
// steward approves it and returns another in the review queue, releases the held output
// after reading its summary, sees the late practice flagged, applies an opt-out list
// (counts only), searches and verifies the audit log and lists the users. A commissioner
// is refused by the server, in the page and over gRPC-Web directly. Every state the page
// claims is checked against what the services answer. Fails on any console error or
// Content-Security-Policy violation.
//
// Run: POPLAR_BIN=path/to/poplar node --test ci/browser/steward.test.mjs
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  BIN, CHROMIUM, ENV, PSEUDONYM_KEY as KEY, TIMEOUT, chromium, launchPage, repo, rpc, startServer, stopServer,
  workspace,
} from "./lib.mjs";

// The practice that stopped delivering (the region's third practice).
const LATE = "X90003";
// The researcher's study, shared with ci/python/test_studies.py.
const STUDY = fs.readFileSync(path.join(repo, "ci/fixtures/diabetes-by-pcn.study.toml"), "utf8");

const { work, screenshots, store, users, serverLog } = workspace("poplar-steward-");
const problems = [];
let server, base, addr, tokens, browser, page, region;
let studyId, runId;

function poplar(args, env = {}) {
  return execFileSync(BIN, args, { env: { ...ENV, ...env }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** `poplar studies ...` as a user, from the command line a researcher uses. */
const studiesCli = (token, ...args) => poplar(["studies", ...args, "--addr", `grpc://${addr}`], { POPLAR_TOKEN: token });

/** Poplar's services from Node over gRPC-Web, as the given user. */
async function servicesAs(token) {
  const bytes = new Uint8Array(await (await fetch(`${base}/poplar-descriptors.binpb`)).arrayBuffer());
  const registry = rpc.createFileRegistry(rpc.fromBinary(rpc.FileDescriptorSetSchema, bytes));
  const transport = rpc.createGrpcWebTransport({
    baseUrl: base,
    useBinaryFormat: true,
    interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
  });
  const names = (e) => Object.fromEntries(registry.getEnum(`poplar.studies.v1.${e}`).values.map((v) => [v.localName, v.number]));
  return {
    studies: rpc.createClient(registry.getService("poplar.studies.v1.StudiesService"), transport),
    governance: rpc.createClient(registry.getService("poplar.governance.v1.GovernanceService"), transport),
    StudyState: names("StudyState"),
    OutputState: names("OutputState"),
    Format: names("Format"),
  };
}

/** NHS England's modulus 11 check (a synthetic region plants numbers that fail it). */
function validNhsNumber(text) {
  const total = [...text.slice(0, 9)].reduce((sum, d, i) => sum + Number(d) * (10 - i), 0);
  const check = 11 - (total % 11);
  return check !== 10 && (check === 11 ? 0 : check) === Number(text[9]);
}

async function screenshot(name) {
  const file = path.join(screenshots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

/** Opens a console page and waits until it has answered (or shown an error). */
async function openPage(name) {
  await page.click(`#tab-${name}`);
  return waitForPage(name);
}

async function waitForPage(name) {
  await page.waitForFunction(
    (id) => {
      const p = document.getElementById(id);
      return !p.hidden && !p.hasAttribute("aria-busy") && p.querySelector("h2");
    },
    `panel-${name}`,
    { timeout: TIMEOUT },
  );
  assert.equal(await page.locator("#error").isHidden(), true, `the ${name} page shows an error: ${await page.locator("#error").textContent()}`);
  return page.locator(`#panel-${name}`);
}

/** Waits for the notice an action leaves and returns its text. */
async function noticeText() {
  const notice = page.locator("#notice");
  await page.waitForFunction(() => !document.getElementById("notice").hidden || !document.getElementById("error").hidden, null, { timeout: TIMEOUT });
  assert.equal(await page.locator("#error").isHidden(), true, `the action was refused: ${await page.locator("#error").textContent()}`);
  return notice.textContent();
}

const cells = (locator) =>
  locator.locator("tbody tr").evaluateAll((rows) => rows.map((r) => [...r.cells].map((c) => c.textContent.trim())));

async function signIn(token) {
  await page.goto(`${base}/steward.html`);
  await page.fill("#token", token);
  await page.getByRole("button", { name: "Sign in" }).click();
}

describe("the stewards' console in headless Chromium", { timeout: 900_000 }, () => {
  before(async () => {
    assert.ok(BIN && fs.existsSync(BIN), "POPLAR_BIN must point at a built poplar binary (ci/test sets it)");
    assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing (apt-get install chromium; ci/lib.sh ensure_browser)`);
    region = path.join(work, "region");
    poplar(["synth", "--patients", "1500", "--out", region, "--gp-practices", "6", "--acute-trusts", "1",
      "--mental-health-trusts", "0", "--community-providers", "0", "--social-care", "0", "--pilot-patients", "1500"]);
    // One practice stopped delivering: its only delivery ends six months before the others'.
    const late = path.join(region, "deliveries", LATE);
    const [newest] = fs.readdirSync(late);
    const older = path.join(late, "2026-03-31");
    fs.renameSync(path.join(late, newest), older);
    const manifest = path.join(older, "manifest.toml");
    fs.writeFileSync(manifest, fs.readFileSync(manifest, "utf8").replace(/(delivery|extracted|period_end) = "[0-9-]+"/g, '$1 = "2026-03-31"'));
    poplar(["load", "--registry", path.join(region, "sources.toml"), "--input", path.join(region, "deliveries"), "--store", store]);
    tokens = Object.fromEntries(
      [["sam", "steward"], ["sue", "steward"], ["rae", "researcher"], ["cam", "commissioner"]].map(([name, role]) => [
        name,
        poplar(["users", "add", name, "--role", role, "--users", users]).trim(),
      ]),
    );
    const keyFile = path.join(work, "pseudonym.key");
    fs.writeFileSync(keyFile, `${KEY}\n`);
    ({ proc: server, address: addr, base } = await startServer({ bin: BIN, env: ENV, store, users, log: serverLog },
      "--refresh-secs", "1", "--optout-key-file", keyFile));
    console.log(`server: ${base} (log ${serverLog})`);

    ({ browser, page } = await launchPage(chromium, CHROMIUM, problems, { timeout: TIMEOUT }));
  });

  after(async () => {
    await browser?.close();
    await stopServer(server);
    if (!process.env.POPLAR_KEEP_WORK) fs.rmSync(work, { recursive: true, force: true });
  });

  test("a commissioner is refused the console by the server, not only by the page", async () => {
    const cam = await servicesAs(tokens.cam);
    for (const call of [() => cam.governance.listUsers({}), () => cam.governance.feedStatus({}), () => cam.governance.applyOptOut({ nhsNumbers: "" })]) {
      await assert.rejects(call, (e) => rpc.ConnectError.from(e).code === rpc.Code.PermissionDenied && /steward/.test(e.rawMessage));
    }
    // Studies the commissioner may list are none of them; they can review none.
    assert.equal((await cam.studies.list({})).studies.length, 0);

    await signIn(tokens.cam);
    const error = page.locator("#sign-in-error");
    await error.waitFor({ state: "visible" });
    assert.match(await error.textContent(), /may not see this.*steward/i);
    assert.equal(await page.locator("#app").isHidden(), true, "no console page is shown");
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, "the refused token is not kept");
    await screenshot("steward-1-refused");
  });

  test("review queue: a researcher's study appears with its SQL, parameters and purpose; the steward approves it", async () => {
    const studyFile = path.join(work, "study.toml");
    fs.writeFileSync(studyFile, STUDY);
    studyId = studiesCli(tokens.rae, "submit", studyFile).split("\n")[0].trim();
    const other = studiesCli(tokens.rae, "submit", studyFile).split("\n")[0].trim();
    assert.match(studyId, /^s[0-9a-f]{8}$/);

    await signIn(tokens.sam);
    await page.locator("#app").waitFor({ state: "visible" });
    const panel = await waitForPage("queue");
    const card = panel.locator(`article[data-study="${studyId}"]`);
    await card.waitFor();
    assert.match(await card.locator("pre.sql").textContent(), /count\(\*\) AS people/);
    assert.match(await card.textContent(), /Plan diabetes reviews across the region's primary care networks/);
    assert.match(await card.locator(".meta").first().textContent(), /by rae .*approvals 0 of 1/);
    assert.deepEqual(await cells(card.locator("table")), [["$1", "since", "date", "from 1990-01-01 to 2030-12-31"]]);
    await screenshot("steward-2-queue");

    // Returned with comments: it leaves the queue, and the author sees why.
    const back = panel.locator(`article[data-study="${other}"]`);
    await back.locator("textarea").fill("Please say which PCNs you need");
    await back.getByRole("button", { name: "Return with comments" }).click();
    assert.match(await noticeText(), new RegExp(`${other}: return with comments .* returned`));
    const sam = await servicesAs(tokens.sam);
    const returned = await sam.studies.get({ studyId: other });
    assert.equal(returned.state, sam.StudyState.RETURNED);
    assert.equal(returned.history.at(-1).comments, "Please say which PCNs you need");

    await card.locator('input[type="number"]').first().fill("3");
    await card.getByRole("button", { name: "Approve" }).click();
    assert.match(await noticeText(), new RegExp(`${studyId}: approve .* approved`));
    await waitForPage("queue");
    assert.equal(await panel.locator("article[data-study]").count(), 0, "the queue is empty");
    const approved = await sam.studies.get({ studyId });
    assert.equal(approved.state, sam.StudyState.APPROVED);
    assert.equal(approved.bound.runQuota, 3);
    assert.equal(approved.bound.by, "sam");
    const others = await cells(panel.locator("table"));
    assert.ok(others.some((r) => r[0] === studyId && r[3] === "approved" && r[4] === "0 of 3"), JSON.stringify(others));
  });

  test("output checking: the held output's summary, the output itself, and the steward releases it", async () => {
    runId = studiesCli(tokens.rae, "run", studyId, "--param", "since=2000-01-01").split("\n")[0].trim();
    const rae = await servicesAs(tokens.rae);
    await assert.rejects(() => rae.studies.fetch({ runId, format: rae.Format.CSV }), /held/);
    const sam = await servicesAs(tokens.sam);
    const held = (await sam.studies.get({ studyId })).runs.find((r) => r.runId === runId);
    assert.equal(held.state, sam.OutputState.HELD);

    const panel = await openPage("outputs");
    const card = panel.locator(`article[data-run="${runId}"]`);
    await card.waitFor();
    const summary = Object.fromEntries(
      await card.locator("dl.summary").evaluate((dl) => [...dl.querySelectorAll("dt")].map((dt) => [dt.textContent, dt.nextElementSibling.textContent])),
    );
    assert.equal(summary["Rows"], String(held.summary.rows));
    assert.equal(summary["Cells suppressed"], String(held.summary.cellsSuppressed));
    assert.equal(summary["Smallest count released"], held.summary.smallestCount === undefined ? "none" : String(held.summary.smallestCount));
    assert.equal(summary["Rounding check"], `${held.summary.countsRounded ? "every" : "NOT every"} count is a multiple of ${held.summary.roundTo}`);
    assert.equal(summary["Checks"], "0 of 1 releases");
    await card.getByRole("button", { name: "Show the output" }).click();
    const output = card.locator(".preview table");
    await output.waitFor();
    assert.deepEqual(await output.locator("thead th").allTextContents(), ["pcn", "people"]);
    assert.equal((await cells(output)).length, Number(held.summary.rows));
    await screenshot("steward-3-output-check");

    await card.locator("textarea").fill("PCN totals, all rounded");
    await card.getByRole("button", { name: "Release" }).click();
    assert.match(await noticeText(), new RegExp(`${runId}: release .* released`));
    await waitForPage("outputs");
    assert.equal(await panel.locator("article[data-run]").count(), 0, "nothing is held now");
    const checked = await cells(panel.locator("table"));
    assert.deepEqual(checked.find((r) => r[0] === runId)?.slice(3), ["released", "sam", "PCN totals, all rounded"]);
    const csv = new TextDecoder().decode((await rae.studies.fetch({ runId, format: rae.Format.CSV })).data);
    assert.equal(csv.split("\n")[0], "pcn,people", "the researcher fetches it once released");
  });

  test("feed status: the practice that stopped delivering is flagged late, the others are not", async () => {
    const answer = await (await servicesAs(tokens.sam)).governance.feedStatus({});
    const panel = await openPage("feeds");
    const rows = await cells(panel.locator("table"));
    assert.equal(rows.length, answer.feeds.length, "a row per source");
    const late = rows.find((r) => r[0] === LATE);
    assert.ok(late, `${LATE} is listed`);
    assert.equal(late[1], "Late");
    assert.match(late[4], /to 2026-03-31$/, "the period it covers ends when it stopped");
    assert.ok(Number(late[10]) >= 180, `${LATE} is half a year behind: ${late}`);
    assert.deepEqual(rows.filter((r) => r[1] === "Late").map((r) => r[0]), answer.feeds.filter((f) => f.late).map((f) => f.sourceOrg));
    assert.deepEqual(rows.filter((r) => r[1] === "Late").map((r) => r[0]), [LATE], "only the stopped practice is late");
    assert.equal(await panel.locator("tr.late").count(), 1);
    assert.ok(rows.every((r) => Number(r[7].replace(/,/g, "")) > 0), "every source landed rows");
    assert.match(late[8], /\w+: \d+/, "its quarantined rows, by reason");
    await screenshot("steward-4-feeds");
  });

  test("opt-outs: a list applied from the page answers counts, never the numbers", async () => {
    const patients = fs.readdirSync(path.join(region, "deliveries", "X90001")).map((d) => path.join(region, "deliveries", "X90001", d, "Patient.ndjson")).find((f) => fs.existsSync(f));
    assert.ok(patients, "the FHIR practice's patients");
    const numbers = [...new Set([...fs.readFileSync(patients, "utf8").matchAll(/"value":\s*"(\d{10})"/g)].map((m) => m[1]))].filter(validNhsNumber).slice(0, 3);
    assert.equal(numbers.length, 3);
    const sam = await servicesAs(tokens.sam);
    const before = await sam.governance.optOuts({});
    const panel = await openPage("optouts");
    await panel.locator("#optout-list").fill(`nhs_number\n${numbers.join("\n")}\n12345\n`);
    await panel.getByRole("button", { name: "Apply opt-out list" }).click();
    assert.match(await noticeText(), /Opt-out applied: 3 newly opted out, 0 already recorded, 1 not valid NHS numbers/);
    await waitForPage("optouts");
    const after = await sam.governance.optOuts({});
    assert.equal(after.people, before.people + 3n);
    assert.match(await panel.locator(".meta").first().textContent(), new RegExp(`^${after.people} people are recorded`));
    const result = await panel.locator("section.result").textContent();
    assert.match(result, /Newly opted out3/);
    assert.match(result, /Rows removed from patients\d+/);
    const html = await page.content();
    for (const n of numbers) assert.ok(!html.includes(n), "no NHS number stays on the page");
    for (const n of numbers) assert.equal((await sam.governance.searchAudit({ contains: n })).entries.length, 0, "nor in the audit log");
    assert.ok(!numbers.some((n) => fs.readFileSync(serverLog, "utf8").includes(n)), "nor in the server's log");
    await screenshot("steward-5-optouts");
  });

  test("audit: search by rule finds the commissioner's refusal; the chain verifies", async () => {
    const panel = await openPage("audit");
    await panel.locator("#audit-rule").fill("steward_only_data");
    await panel.getByRole("button", { name: "Search" }).click();
    // The search's answer: every row under the rule asked (the unfiltered log has others).
    await page.waitForFunction(() => {
      const p = document.getElementById("panel-audit");
      const rules = [...p.querySelectorAll("tbody tr")].map((r) => r.cells[7]?.textContent);
      return !p.hasAttribute("aria-busy") && rules.length > 0 && rules.every((r) => r === "steward_only_data");
    });
    await waitForPage("audit");
    const rows = await cells(panel.locator("table"));
    assert.ok(rows.length >= 3, `the commissioner's refused calls: ${rows.length}`);
    assert.ok(rows.every((r) => r[2] === "cam" && r[6] === "refused" && r[7] === "steward_only_data"), JSON.stringify(rows));
    await panel.getByRole("button", { name: "Verify the chain" }).click();
    assert.match(await noticeText(), /verifies/);
    const verified = await (await servicesAs(tokens.sam)).governance.verifyAudit({});
    assert.ok(verified.ok);
    assert.match(await panel.locator("#verify-result").textContent(), /^Verified: \d+ entries, head \d+/);
    await screenshot("steward-6-audit");
  });

  test("users: every user and role, no token", async () => {
    const panel = await openPage("users");
    const rows = await cells(panel.locator("table"));
    assert.deepEqual(new Map(rows.map((r) => [r[0], r[1]])), new Map([["cam", "commissioner"], ["rae", "researcher"], ["sam", "steward"], ["sue", "steward"]]));
    const html = await page.content();
    for (const token of Object.values(tokens)) assert.ok(!html.includes(token.slice(4, 20)), "no token on the page");
  });

  test("no console error, page error or CSP violation happened", async () => {
    const violations = await page.evaluate(() => window.__cspViolations);
    assert.deepEqual([...problems, ...violations.map((v) => `CSP: ${v}`)], []);
  });
});
