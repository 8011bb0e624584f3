// Accessibility audit of every page (run by tests/browser/test_accessibility_e2e.py).
//
// axe-core (the WCAG rule engine that browsers' own audits use) checks each page with its
// content loaded, in the light and the dark theme and at phone width, against WCAG 2.1 A and
// AA, colour contrast included. Then the keyboard: the skip link, the navigation, and a form
// filled and submitted without the mouse. The result lists every violation, for pytest to
// assert there are none.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { BASE, NARROW, WIDE, ask, log, login, main, newContext, waitLive } from "./lib.mjs";

const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
const DETECT_FILES = JSON.parse(process.env.FMM_DETECT_FILES ?? "[]");

/** axe-core's violations on the page as it is now: rule, impact and where, in short. */
async function audit(page) {
  // The audit runs in the page (the context bypasses the page's CSP only to load axe itself).
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(AXE);
  const violations = await page.evaluate(async (tags) => {
    const res = await window.axe.run(document, { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] });
    return res.violations.map((v) => ({
      rule: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => ({ target: n.target.join(" "), why: n.failureSummary })),
      count: v.nodes.length,
    }));
  }, TAGS);
  return violations;
}

/** Every page, with what it waits for and what it does before the audit. */
function pages(ids) {
  return [
    { name: "overview", path: "/", ready: ".stats .stat" },
    {
      name: "participants",
      path: "/participants",
      ready: "h1:has-text('Participants')",
      // The invitation panel with its command, and a participant waiting for approval.
      after: async (page) => {
        await page.waitForSelector("table tbody tr");
        await page.click("button:has-text('Invite participant')");
        await page.click("button:has-text('Create token')");
        await page.waitForSelector("pre.command:has-text('fedmetamal join')");
      },
    },
    { name: "new-run", path: "/runs/new", ready: "#f-training-rounds", after: newRunWithError },
    { name: "run", path: `/runs/${ids.runId}`, ready: "text=non-IID index", after: (page) => page.waitForSelector("canvas") },
    {
      name: "compare",
      path: "/compare",
      ready: `#cmp-${ids.runId}`,
      after: async (page) => {
        await page.check(`#cmp-${ids.runId}`);
        await page.waitForSelector(".main table tbody tr");
      },
    },
    { name: "model", path: `/models?id=${ids.modelId}`, ready: "table.cm" },
    { name: "detect", path: "/detect", ready: "#det-model", after: (page) => detect(page, ids.modelId) },
    { name: "not-found", path: "/no/such/page", ready: "h1" },
  ];
}

/** The New run form with one field made invalid: the message beside it is audited too. */
async function newRunWithError(page) {
  await page.check("#mode-sim");
  await page.fill("#f-training-rounds", "0");
  await page.waitForSelector("#f-training-rounds[aria-invalid='true']", { timeout: 15000 });
}

async function detect(page, modelId) {
  await page.waitForSelector(`#det-model option[value="${modelId}"]:not([disabled])`, { state: "attached", timeout: 15000 });
  await page.selectOption("#det-model", modelId);
  await page.setInputFiles("#det-files", DETECT_FILES);
  await page.waitForFunction(
    (n) => document.querySelectorAll(".result").length === n && !document.querySelector(".result .pill.warn"),
    DETECT_FILES.length,
    { timeout: 90000 },
  );
}

async function visit(page, p) {
  await page.goto(`${BASE}${p.path}`);
  await page.waitForSelector(p.ready, { timeout: 20000 });
  if (p.after) await p.after(page);
  await page.waitForTimeout(150); // let transitions settle (contrast is read from the final colours)
}

/** Tab through the overview: the skip link first, then the navigation; focus always visible. */
async function keyboard(page) {
  await page.goto(`${BASE}/`);
  await page.waitForSelector(".stats .stat");
  await page.evaluate(() => document.activeElement?.blur?.());
  const stops = [];
  for (let i = 0; i < 14; i++) {
    await page.keyboard.press("Tab");
    stops.push(
      await page.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return { tag: "body", text: "", visible: false };
        const s = getComputedStyle(el);
        const outline = s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0;
        const ring = s.boxShadow && s.boxShadow !== "none";
        return { tag: el.tagName.toLowerCase(), text: (el.textContent ?? "").trim().slice(0, 40), visible: outline || !!ring };
      }),
    );
  }
  // The skip link moves focus to the page's main content.
  await page.focus(".skip-link");
  await page.keyboard.press("Enter");
  const afterSkip = await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName.toLowerCase());
  // The navigation works from the keyboard: focus "Participants" and press Enter.
  const nav = page.locator("nav a:has-text('Participants')");
  await nav.focus();
  await page.keyboard.press("Enter");
  await page.waitForSelector("h1:has-text('Participants')");
  return { stops, afterSkip, navigated: new URL(page.url()).pathname };
}

/** Save a template on the New run page with the keyboard only. */
async function keyboardForm(page) {
  await page.goto(`${BASE}/runs/new`);
  await page.waitForSelector("#f-training-rounds", { timeout: 20000 });
  await page.focus("#f-training-rounds");
  await page.keyboard.press("ControlOrMeta+A");
  await page.keyboard.type("3");
  const name = page.locator("#tpl-name");
  if (!(await name.count())) return { saved: false, why: "no template name field" };
  await name.focus();
  await page.keyboard.type("keyboard template");
  await page.keyboard.press("Tab"); // to "Save as template"
  const focused = await page.evaluate(() => document.activeElement?.textContent?.trim());
  if (focused !== "Save as template") return { saved: false, why: `Tab from the name reached ${focused}` };
  await page.keyboard.press("Enter");
  await page.waitForSelector("[role=status]:has-text('keyboard template')", { timeout: 10000 });
  return { saved: true };
}

main(async (browser) => {
  const ids = await ask("prepare");
  const out = { audits: {}, console: [], pageErrors: [], foreign: [], failed: [] };
  const settings = [
    { label: "light", viewport: WIDE, colorScheme: "light" },
    { label: "dark", viewport: WIDE, colorScheme: "dark" },
    { label: "light-375px", viewport: NARROW, colorScheme: "light" },
  ];
  for (const s of settings) {
    const { ctx, record } = await newContext(browser, s.viewport, { colorScheme: s.colorScheme, bypassCSP: true });
    const page = await ctx.newPage();
    await page.goto(`${BASE}/login`);
    await page.waitForSelector("#login-user");
    out.audits[`${s.label}/login`] = await audit(page);
    await login(page);
    await waitLive(page);
    out.theme ??= {};
    out.theme[s.label] = await page.evaluate(() => document.documentElement.dataset.theme);
    for (const p of pages(ids)) {
      await visit(page, p);
      out.audits[`${s.label}/${p.name}`] = await audit(page);
      const n = out.audits[`${s.label}/${p.name}`].length;
      log(`audited ${s.label}/${p.name}: ${n} violation(s)`);
      if (s.viewport === NARROW) {
        out.overflow ??= {};
        out.overflow[p.name] = await page.evaluate(() => {
          const px = document.documentElement.scrollWidth - window.innerWidth;
          if (px <= 0) return px;
          // Name the innermost elements that stick out, for the failure message.
          const clipped = (e) => {
            for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
              if (getComputedStyle(a).overflowX !== "visible") return true;
            }
            return false;
          };
          const out = (e) => e.getBoundingClientRect().right > window.innerWidth + 1;
          // A box that sticks out, or text that overflows its (visible-overflow) box.
          const sticks = (e) => !clipped(e) && (out(e) || (e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0 && getComputedStyle(e).overflowX === "visible"));
          const wide = [...document.querySelectorAll("body *")].filter((e) => sticks(e) && ![...e.children].some(sticks));
          const name = (e) => `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}${e.className && typeof e.className === "string" ? "." + e.className.trim().split(/\s+/).join(".") : ""}`;
          return { px, elements: wide.slice(0, 6).map((e) => `${name(e.parentElement)} > ${name(e)} (${Math.round(e.getBoundingClientRect().right)} px)`) };
        });
      }
    }
    if (s.label === "light") {
      out.keyboard = await keyboard(page);
      out.keyboardForm = await keyboardForm(page);
    }
    for (const k of ["console", "pageErrors", "foreign", "failed"]) out[k].push(...record[k]);
    await ctx.close();
  }
  return out;
});
