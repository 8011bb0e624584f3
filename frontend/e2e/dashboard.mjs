// The operator's main flow in the browser: log in, start a simulated run on the pe-headers
// dataset and watch its charts fill, reload, inspect the model, detect real files, start a
// second run and compare both; screenshots of each page; performance figures.
// Inputs (env): FMM_URL, FMM_PASSWORD, FMM_SHOTS, FMM_DETECT_FILES (JSON list of paths),
// FMM_ROUNDS (rounds of the first run), FMM_LOCAL_EPOCHS (slows rounds down to watch them).
import {
  BASE,
  NARROW,
  WIDE,
  ask,
  chartPoints,
  log,
  login,
  main,
  newContext,
  shot,
  startChartTrace,
  stopChartTrace,
  waitLive,
} from "./lib.mjs";

const ROUNDS = Number(process.env.FMM_ROUNDS ?? 4);
const EPOCHS = process.env.FMM_LOCAL_EPOCHS ?? "15";
const DETECT_FILES = JSON.parse(process.env.FMM_DETECT_FILES ?? "[]");
const METRIC_CHART = /per round$/;

/** Fills the New run form for a simulated pe-headers run and starts it; returns the run id. */
async function startRun(page, { name, rounds, epochs, screenshot }) {
  await page.click("nav a:has-text('New run')");
  await page.waitForSelector("#f-training-rounds", { timeout: 20000 });
  await page.fill("#run-name", name);
  await page.check("#mode-sim");
  await page.fill("#sim-count", "3");
  await page.selectOption("#f-dataset-source", "pe-headers");
  await page.fill("#f-training-rounds", String(rounds));
  await page.fill("#f-training-local_epochs", String(epochs));
  await page.waitForSelector(".page-head .pill.ok:has-text('configuration valid')", { timeout: 15000 });
  if (screenshot) await shot(page, "new-run");
  await page.click("button[type=submit]:has-text('Start run')");
  await page.waitForURL(/\/runs\/(?!new)[^/]+$/, { timeout: 20000 });
  return decodeURIComponent(new URL(page.url()).pathname.split("/").pop());
}

async function progressText(page) {
  return (await page.textContent(".progress-row strong")).trim();
}

async function waitRunDone(page, rounds, timeout = 180000) {
  await page.waitForFunction(
    (n) => {
      const head = document.querySelector(".page-head .pill")?.textContent ?? "";
      const done = document.querySelector(".progress-row strong")?.textContent ?? "";
      return head.trim() === "failed" || (done.includes(`${n} / ${n} rounds`) && head.trim() === "completed");
    },
    rounds,
    { timeout },
  );
  return (await page.textContent(".page-head .pill")).trim();
}

/** Waits until every metric chart has drawn at least `min` points; returns the counts. */
async function waitChartsDrawn(page, min, timeout = 20000) {
  await page.waitForFunction(
    ([src, n]) => {
      const re = new RegExp(src);
      const cs = [...document.querySelectorAll("canvas")].filter((c) => re.test(c.getAttribute("aria-label") ?? ""));
      return cs.length > 0 && cs.every((c) => (c.__fmmPoints ?? 0) >= n);
    },
    [METRIC_CHART.source, min],
    { timeout, polling: "raf" },
  );
  return (await chartPoints(page)).filter((c) => METRIC_CHART.test(c.label));
}

/** Navigation timing of the page's first load, in ms from navigation start. */
async function navigationTiming(page) {
  return page.evaluate(() => {
    const n = performance.getEntriesByType("navigation")[0];
    const res = performance.getEntriesByType("resource");
    return {
      ttfb: n.responseStart,
      domContentLoaded: n.domContentLoadedEventEnd,
      load: n.loadEventEnd,
      resources: res.length,
      transferKB: Math.round((n.transferSize + res.reduce((s, r) => s + (r.transferSize || 0), 0)) / 1024),
      decodedKB: Math.round((n.decodedBodySize + res.reduce((s, r) => s + (r.decodedBodySize || 0), 0)) / 1024),
    };
  });
}

/** Median time of `n` unary Connect calls (GetServerInfo) made from the page, as the app does. */
async function unaryMs(page, n = 15) {
  return page.evaluate(async (count) => {
    const csrf = document.cookie.split("; ").find((c) => c.startsWith("fmm_csrf="))?.slice(9) ?? "";
    const times = [];
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      const r = await fetch("/fedmetamal.v1.ControlService/GetServerInfo", {
        method: "POST",
        headers: { "content-type": "application/json", "connect-protocol-version": "1", "x-csrf-token": csrf },
        body: "{}",
      });
      await r.text();
      if (!r.ok) throw new Error(`GetServerInfo answered ${r.status}`);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return { median: times[Math.floor(times.length / 2)], max: times[times.length - 1], n: count };
  }, n);
}

/** A page action: on the overview, click the link to a run; ms until its charts are drawn. */
async function openRunMs(page, runId, screenshot = "") {
  await page.click("nav a:has-text('Overview')");
  await page.waitForSelector(".stats .stat");
  const link = page.locator(`a[href="/runs/${runId}"]`).first();
  await link.waitFor({ timeout: 15000 });
  if (screenshot) {
    // The overview with the run past its first round: progress, models, recent runs.
    await page.waitForFunction((id) => {
      const row = document.querySelector(`a[href="/runs/${id}"]`)?.closest("tr");
      return row && !/^0 \//.test(row.querySelector("td:nth-child(3) small")?.textContent?.trim() ?? "0 /");
    }, runId, { timeout: 30000 });
    await shot(page, screenshot);
  }
  const t0 = Date.now();
  await link.click();
  await waitChartsDrawn(page, 1);
  return Date.now() - t0;
}

async function responsiveness(page, runId, screenshot = "") {
  return { unaryMs: await unaryMs(page), openRunMs: await openRunMs(page, runId, screenshot) };
}

await main(async (browser) => {
  const out = {};
  const { ctx, record } = await newContext(browser, WIDE);
  const page = await ctx.newPage();

  // First load of the built assets: a fresh context has an empty cache.
  await page.goto(`${BASE}/`);
  await page.waitForSelector("#login-user");
  out.firstLoad = await navigationTiming(page);
  log("first load", JSON.stringify(out.firstLoad));
  await login(page);
  await waitLive(page);
  await page.waitForSelector(".stats .stat");
  // A reload with a warm cache (what an operator sees most of the time).
  const t0 = Date.now();
  await page.reload();
  await page.waitForSelector(".stats .stat");
  out.reloadToOverviewMs = Date.now() - t0;
  out.reloadTiming = await navigationTiming(page);
  await waitLive(page);

  // Run 1, watched live.
  const run1 = await startRun(page, { name: "e2e pe-headers A", rounds: ROUNDS, epochs: EPOCHS, screenshot: true });
  log("run 1", run1);
  await startChartTrace(page, METRIC_CHART);
  out.progressSeen = [await progressText(page)];
  const seen = setInterval(async () => {
    const t = await progressText(page).catch(() => "");
    if (t && t !== out.progressSeen.at(-1)) out.progressSeen.push(t);
  }, 100);
  out.run1State = await waitRunDone(page, ROUNDS);
  clearInterval(seen);
  out.run1 = run1;
  out.run1Progress = await progressText(page);
  await page.waitForTimeout(300); // the last frame
  out.trace = await stopChartTrace(page);
  out.chartsLive = (await chartPoints(page)).filter((c) => METRIC_CHART.test(c.label));
  out.logKinds = await page.locator("ol.log li").allInnerTexts();
  await page.waitForSelector("text=non-IID index");
  // The rounds table and timeline reload at most every 1.5 s: let them show the last round.
  await page.waitForFunction((n) => document.querySelectorAll(".rounds tbody tr").length >= n, ROUNDS, { timeout: 15000 });
  await shot(page, "run");
  await shot(page, "run-full", { fullPage: true }); // timeline, participants, rounds and log

  // Reload: the charts, the log and the participation timeline refill from the server's history.
  const listEvents = page.waitForResponse((r) => r.url().endsWith("/fedmetamal.v1.ControlService/ListEvents"), { timeout: 20000 });
  await page.reload();
  await page.waitForSelector(".progress-row strong");
  const maxLive = Math.min(...out.chartsLive.map((c) => c.points));
  out.chartsAfterReload = await waitChartsDrawn(page, maxLive);
  out.run1ProgressAfterReload = await progressText(page);
  out.listEventsStatus = (await listEvents).status();
  await page.waitForSelector("ol.log li:has-text('[round_finished]')", { timeout: 15000 });
  out.logAfterReload = await page.locator("ol.log li").allInnerTexts();
  out.timeline = await page.evaluate(() => ({
    columns: [...document.querySelectorAll("table.timeline thead th[data-round]")].map((th) => Number(th.dataset.round)),
    rows: [...document.querySelectorAll("table.timeline tbody tr")].map((tr) => ({
      id: tr.querySelector("th")?.dataset.participant ?? "",
      cells: [...tr.querySelectorAll("td")].map((td) => td.dataset.state),
      labelled: [...tr.querySelectorAll("td [role=img]")].every((s) => (s.getAttribute("aria-label") ?? "").includes("round")),
    })),
  }));
  await waitLive(page);

  // The model of run 1's last round.
  await page.click(".rounds tbody tr:first-child a:has-text('open')");
  await page.waitForSelector("h2:has-text('ROC curve')", { timeout: 20000 });
  await page.waitForSelector("table.cm");
  const readModel = async () => ({
    modelId: await page.inputValue("#model-pick"),
    threshold: (await page.textContent(".stat:has(.label:has-text('threshold')) .value")).trim(),
    cm: (await page.locator("table.cm td.num").allInnerTexts()).map((s) => s.trim()),
    rates: (await page.textContent(".table-wrap:has(table.cm) + p")).trim(),
    params: (await page.textContent(".stat:has(.label:has-text('parameters')) .value")).trim(),
    schema: (await page.textContent(".stat:has(.label:has-text('feature schema')) .value")).trim(),
    roc: (await chartPoints(page)).find((c) => c.label === "ROC curve") ?? null,
  });
  const model1 = await readModel();
  await page.fill("#fpr", "10");
  await page.waitForFunction((old) => document.querySelector(".table-wrap:has(table.cm) + p")?.textContent.trim() !== old, model1.rates, { timeout: 15000 });
  const model2 = await readModel();
  out.model = { atDefault: model1, atFpr10: model2 };
  await page.fill("#fpr", "1");
  await page.waitForFunction((old) => document.querySelector(".table-wrap:has(table.cm) + p")?.textContent.trim() !== old, model2.rates, { timeout: 15000 });
  out.model.atFpr1 = await readModel();
  await shot(page, "model");

  // Detect: the server extracts features, the browser runs the model.
  await page.click("nav a:has-text('Detect')");
  await page.waitForSelector("#det-model");
  await page.waitForSelector(`#det-model option[value="${model1.modelId}"]:not([disabled])`, { state: "attached", timeout: 15000 });
  await page.selectOption("#det-model", model1.modelId);
  await page.waitForSelector("#det-files", { state: "attached" });
  const detectT0 = Date.now();
  await page.setInputFiles("#det-files", DETECT_FILES);
  await page.waitForFunction(
    (n) => document.querySelectorAll(".result").length === n && !document.querySelector(".result .pill.warn"),
    DETECT_FILES.length,
    { timeout: 90000 },
  );
  out.detectAllMs = Date.now() - detectT0;
  out.modelLoad = (await page.locator(".dropzone p.muted").allInnerTexts()).join(" ");
  out.detect = [];
  for (const r of await page.locator(".result").all()) {
    const stat = async (label) => {
      const s = r.locator(`.stat:has(.label:has-text('${label}')) .value`);
      return (await s.count()) ? (await s.innerText()).trim() : null;
    };
    out.detect.push({
      name: (await r.locator("h2").innerText()).trim(),
      verdict: (await r.locator(".result-head .pill").innerText()).trim(),
      error: (await r.locator(".field-error").count()) ? (await r.locator(".field-error").innerText()).trim() : null,
      score: await stat("malware score"),
      threshold: await stat("threshold"),
      inference: await stat("in-browser inference"),
      topFeatures: await r.locator("tbody tr").count(),
      fileType: (await r.locator("p.help").count()) ? (await r.locator("p.help").first().innerText()).trim() : null,
    });
  }
  await shot(page, "detect");
  // One more file with the model already loaded: the in-browser inference of one file.
  await page.setInputFiles("#det-files", [DETECT_FILES[0]]);
  await page.waitForFunction(
    (n) => document.querySelectorAll(".result").length === n && !document.querySelector(".result .pill.warn"),
    DETECT_FILES.length + 1,
    { timeout: 60000 },
  );
  out.detectWarm = (await page.locator(".result").first().locator(".stat:has(.label:has-text('in-browser inference')) .value").innerText()).trim();

  // Run 2, then compare both.
  const run2 = await startRun(page, { name: "e2e pe-headers B", rounds: ROUNDS - 1, epochs: 5, screenshot: false });
  out.run2 = run2;
  out.run2State = await waitRunDone(page, ROUNDS - 1);
  await page.click("nav a:has-text('Compare')");
  await page.check(`#cmp-${run1}`);
  await page.check(`#cmp-${run2}`);
  await page.waitForFunction(() => document.querySelectorAll(".main table tbody tr").length === 2);
  await page.waitForFunction(
    () => [...document.querySelectorAll("canvas")].some((c) => (c.__fmmPoints ?? 0) > 0),
    null,
    { polling: "raf" },
  );
  out.compare = {
    rows: await page.locator(".main table tbody tr").allInnerTexts(),
    head: await page.locator(".main table thead th").allInnerTexts(),
    chart: await chartPoints(page),
    metrics: await page.locator("#cmp-metric option").allTextContents(),
  };
  await shot(page, "compare");
  const [csv] = await Promise.all([page.waitForEvent("download"), page.click("button:has-text('Export table (CSV)')")]);
  out.csv = { name: csv.suggestedFilename(), text: await readDownload(csv) };
  const [png] = await Promise.all([page.waitForEvent("download"), page.click("button:has-text('Export chart (PNG)')")]);
  out.png = { name: png.suggestedFilename(), bytes: (await readDownload(png, null)).length };

  // The dashboard's responsiveness while a run trains, then with 50 more watch streams of that
  // run open (pytest starts run 3 and opens the streams), then idle (run 3 stopped).
  const run3 = (await ask("start_live_run")).run_id;
  out.run3 = run3;
  out.responsive = { training: await responsiveness(page, run3, "overview") };
  out.responsive.watchers = (await ask("open_watchers", { run_id: run3, n: 50 })).open;
  out.responsive.training50 = await responsiveness(page, run3);
  out.responsive.streamEvents = (await ask("close_watchers")).events;
  out.run3State = (await ask("stop_live_run")).state;
  out.responsive.idle = await responsiveness(page, run3);
  log("responsive", JSON.stringify(out.responsive));

  // Dark theme and a phone-sized screen.
  await page.goto(`${BASE}/runs/${run1}`);
  await waitChartsDrawn(page, 1);
  await page.click(".topbar button:has-text('Dark')");
  await page.waitForFunction(() => document.documentElement.dataset.theme === "dark");
  await page.waitForTimeout(200);
  await shot(page, "run-dark");
  out.darkBackground = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await page.click(".topbar button:has-text('Light')");
  await page.setViewportSize(NARROW);
  await page.goto(`${BASE}/`);
  await page.waitForSelector(".stats .stat");
  await waitLive(page);
  await shot(page, "overview-375px");
  out.narrowOverflowPx = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.setViewportSize(WIDE);
  await ctx.close();
  return { ...out, ...record };
});

async function readDownload(download, encoding = "utf8") {
  const { readFile } = await import("node:fs/promises");
  const path = await download.path();
  return encoding ? readFile(path, encoding) : readFile(path);
}
