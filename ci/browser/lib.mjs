// What the browser tests share: a real `poplar serve` on a free port, and a headless
// Chromium page that records every console error, page error, failed request and
// Content-Security-Policy violation (the tests end by asserting there were none).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, "../..");
// playwright-core lives where ci/lib.sh's ensure_browser installed it (outside the clone),
// or in node_modules here after a plain `npm ci`.
const require = createRequire(path.join(process.env.POPLAR_NODE_DIR || here, "package.json"));
export const { chromium } = require("playwright-core");
// The page's own gRPC-Web client, used by the tests to ask the services the same questions
// the page asks, so what the page shows is checked against what the service answered.
export const rpc = await import(path.join(repo, "dashboard/vendor/rpc.js"));

export const BIN = process.env.POPLAR_BIN;
export const CHROMIUM = process.env.POPLAR_CHROMIUM || "/usr/bin/chromium";
// One view's answer in a debug build on 2 cores: the area profile (every measure for an
// area and its peers) has taken over a minute.
export const TIMEOUT = 180_000;
export const PSEUDONYM_KEY = "browser-test-key-0123456789abcdef0123456";
export const ENV = {
  ...process.env,
  POPLAR_PSEUDONYM_KEY: PSEUDONYM_KEY,
  POPLAR_NOISE_KEY: "browser-noise-key-0123456789abcdef012345",
  POPLAR_LOG: "warn,buoyant_kernel=off",
};

/** A test's scratch directory (`prefix` names it) and where its screenshots go
 * ($POPLAR_SCREENSHOTS, or a new temporary directory): {work, screenshots, store, users, serverLog}. */
export function workspace(prefix) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const screenshots = process.env.POPLAR_SCREENSHOTS || fs.mkdtempSync(path.join(os.tmpdir(), "poplar-screenshots-"));
  fs.mkdirSync(screenshots, { recursive: true });
  return {
    work,
    screenshots,
    store: path.join(work, "store"),
    users: path.join(work, "users.toml"),
    serverLog: path.join(work, "server.log"),
  };
}

/** `poplar serve` on a free port: its first stdout line names the address. Its log goes
 * to a file and stdout keeps being read: a pipe nobody reads fills and stalls a server.
 * Returns {proc, address, base}. */
export async function startServer({ bin, env, store, users, log }, ...flags) {
  const proc = spawn(bin, ["serve", "--store", store, "--users", users, "--addr", "127.0.0.1:0", ...flags], {
    env,
    stdio: ["ignore", "pipe", fs.openSync(log, "a")],
  });
  const lines = readline.createInterface({ input: proc.stdout });
  const first = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`poplar serve named no address in 120 s; see ${log}`)), 120_000);
    lines.once("line", (line) => (clearTimeout(timer), resolve(line)));
    proc.once("exit", (code) => (clearTimeout(timer), reject(new Error(`poplar serve exited (${code}): ${fs.readFileSync(log, "utf8").slice(-3000)}`))));
  });
  lines.on("line", (line) => fs.appendFileSync(log, `[stdout] ${line}\n`));
  const address = first.match(/grpc:\/\/(\S+)/)?.[1];
  assert.ok(address, `poplar serve's first line names no grpc:// address: ${first}`);
  return { proc, address, base: `http://${address}` };
}

/** SIGTERM, and wait until it has gone. */
export async function stopServer(proc) {
  if (!proc || proc.exitCode !== null) return;
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  proc.kill("SIGTERM");
  await exited;
}

/** Headless Chromium and one page whose problems are pushed onto `problems`. */
export async function launchPage(chromium, executablePath, problems, { timeout, ...contextOptions }) {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    // Chromium's sandbox needs user namespaces that root in a container rarely has.
    args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...contextOptions });
  // Violations are also console errors in Chromium; the event catches them even if not.
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`),
    );
  });
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  return { browser, page };
}
