// Shared pieces of the dashboard's browser tests (run by tests/browser/test_dashboard_e2e.py).
//
// The scripts drive Debian's chromium (never a downloaded browser) through playwright-core.
// They talk to pytest over stdin/stdout: a line {"ask": ...} asks pytest to do something with
// the real processes (start a participant, open watch streams) and waits for its one-line JSON
// answer; the last line {"result": ...} carries what the page showed, for pytest to assert on.
// Progress goes to stderr.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

export const BASE = (process.env.FMM_URL ?? "").replace(/\/$/, "");
export const PASSWORD = process.env.FMM_PASSWORD ?? "";
export const SHOTS = process.env.FMM_SHOTS ?? "";
export const WIDE = { width: 1280, height: 800 };
export const NARROW = { width: 375, height: 800 };

// The flags from the toolchain report: no sandbox (containers), no GPU, no background traffic
// (so that "no request to another host" is the app's doing, not the browser's).
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export function log(...args) {
  process.stderr.write(`[e2e ${new Date().toISOString().slice(11, 23)}] ${args.join(" ")}\n`);
}

let lines = null;
/** Ask pytest to do something; resolves with its answer (one JSON line on stdin). */
export async function ask(what, payload = {}) {
  lines ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  process.stdout.write(JSON.stringify({ ask: what, ...payload }) + "\n");
  const next = await lines.next();
  if (next.done) throw new Error(`pytest closed stdin instead of answering ${what}`);
  const answer = JSON.parse(next.value);
  if (answer.error) throw new Error(`pytest could not ${what}: ${answer.error}`);
  return answer;
}

export function finish(result) {
  process.stdout.write(JSON.stringify({ result }) + "\n");
}

export async function launch() {
  if (!BASE) throw new Error("FMM_URL is not set");
  return chromium.launch({
    executablePath: process.env.FMM_CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: FLAGS,
  });
}

// Counts what Chart.js draws: every point is one arc() on the chart's canvas, and each redraw
// starts with clearRect(). After a frame, canvas.__fmmPoints is the number of points the chart
// shows now. Nothing is added to the app for this: it wraps the browser's 2D context.
const DRAW_PROBE = `(() => {
  const p = CanvasRenderingContext2D.prototype;
  const arc = p.arc, clear = p.clearRect;
  p.clearRect = function (...a) {
    if (this.canvas) { this.canvas.__fmmCur = 0; this.canvas.__fmmPoints = 0; }
    return clear.apply(this, a);
  };
  p.arc = function (...a) {
    const c = this.canvas;
    if (c) { c.__fmmCur = (c.__fmmCur || 0) + 1; c.__fmmPoints = c.__fmmCur; }
    return arc.apply(this, a);
  };
})();`;

/**
 * A browser context that records console errors and warnings, uncaught page errors, failed
 * requests and requests to any host other than the dashboard's.
 */
export async function newContext(browser, viewport = WIDE, extra = {}) {
  const ctx = await browser.newContext({ viewport, colorScheme: "light", acceptDownloads: true, ...extra });
  await ctx.addInitScript(DRAW_PROBE);
  const record = { console: [], pageErrors: [], foreign: [], failed: [] };
  const origin = new URL(BASE).origin;
  ctx.on("request", (r) => {
    const url = r.url();
    if (!url.startsWith(origin + "/") && !/^(data|blob|about):/.test(url)) record.foreign.push(url);
  });
  ctx.on("requestfailed", (r) => {
    // A stream the page closes on purpose (navigation, pagehide) is "aborted": not a failure.
    const why = r.failure()?.errorText ?? "";
    if (!/ERR_ABORTED/.test(why)) record.failed.push(`${r.url()} ${why}`);
  });
  ctx.on("page", (page) => watchPage(page, record));
  return { ctx, record };
}

function watchPage(page, record) {
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") {
      record.console.push({ type: m.type(), text: m.text(), url: page.url() });
    }
  });
  page.on("pageerror", (e) => record.pageErrors.push(`${page.url()}: ${e.message}`));
  // The run page asks before stopping, the participants page before revoking.
  page.on("dialog", (d) => void d.accept());
}

/** A screenshot for docs/screenshots: the viewport, or with fullPage the whole page. */
export async function shot(page, name, { fullPage = false } = {}) {
  if (!SHOTS) return;
  await page.evaluate(() => {
    document.activeElement?.blur?.();
    window.scrollTo(0, 0);
  });
  await page.screenshot({ path: `${SHOTS}/${name}.png`, animations: "disabled", caret: "hide", fullPage });
  log("screenshot", name);
}

export async function login(page, password = PASSWORD) {
  await page.goto(`${BASE}/`);
  await page.waitForSelector("#login-user");
  await page.fill("#login-user", "admin");
  await page.fill("#login-pass", password);
  await page.click("form button[type=submit]");
  await page.waitForSelector("h1:has-text('Overview')");
}

/** Waits until the app's one event stream per tab is connected (the top bar says "live"). */
export async function waitLive(page) {
  await page.waitForSelector(".topbar .pill.ok:has-text('live')", { timeout: 15000 });
}

/** Points drawn on each chart of the page, by the chart's accessible label. */
export async function chartPoints(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll("canvas")].map((c) => ({
      label: c.getAttribute("aria-label") ?? "",
      points: c.__fmmPoints ?? 0,
    })),
  );
}

/** Starts recording, every animation frame, the point counts of the charts whose label matches. */
export async function startChartTrace(page, labelPattern) {
  await page.evaluate((src) => {
    const re = new RegExp(src);
    const trace = [];
    let last = "";
    window.__fmmTrace = trace;
    window.__fmmTraceOn = true;
    const tick = () => {
      const counts = [...document.querySelectorAll("canvas")]
        .filter((c) => re.test(c.getAttribute("aria-label") ?? ""))
        .map((c) => c.__fmmPoints ?? 0);
      const key = counts.join(",");
      if (key !== last) {
        trace.push({ t: performance.timeOrigin + performance.now(), counts });
        last = key;
      }
      if (window.__fmmTraceOn) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }, labelPattern.source);
}

export async function stopChartTrace(page) {
  return page.evaluate(() => {
    window.__fmmTraceOn = false;
    return window.__fmmTrace ?? [];
  });
}

/** Runs one script body; on an error prints it and exits non-zero (pytest shows stderr). */
export async function main(body) {
  let browser;
  try {
    browser = await launch();
    finish(await body(browser));
  } catch (err) {
    log("FAILED:", err?.stack ?? String(err));
    process.exitCode = 1;
    // What the pages showed when it failed, for the person reading the test's output.
    const dir = process.env.FMM_DEBUG;
    const pages = browser ? browser.contexts().flatMap((c) => c.pages()) : [];
    for (const [i, page] of pages.entries()) {
      if (dir) await page.screenshot({ path: `${dir}/failed-${i}.png`, fullPage: true }).catch(() => undefined);
      log(`page ${i} ${page.url()}:`, (await page.innerText("body").catch(() => "?")).slice(0, 1500));
    }
  } finally {
    await browser?.close().catch(() => undefined);
    lines?.return?.();
    process.stdin.destroy();
  }
}
