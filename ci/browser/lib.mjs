// What the browser tests share: a real `poplar serve` on a free port, and a headless
// Chromium page that records every console error, page error, failed request and
// Content-Security-Policy violation (the tests end by asserting there were none).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import readline from "node:readline";

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
