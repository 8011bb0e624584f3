// Account management in the browser: the admin adds a viewer on the Users page (after one
// refused try, whose server message shows next to the password field), logs out; the viewer
// logs in, finds no admin controls, changes their own password (the top bar's user name leads
// there), logs in again with it; the admin, back, sees the viewer's last login and deletes the
// account. Screenshot: users (the list with the viewer, before the delete).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { BASE, WIDE, log, login, main, newContext, shot } from "./lib.mjs";

const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const VIEWER = process.env.FMM_VIEWER ?? "e2e-viewer";
const FIRST = "first viewer password";
const SECOND = "second viewer password";

/** Log in as anyone (lib.mjs's login is the admin's). */
async function loginAs(page, username, password) {
  await page.goto(`${BASE}/`);
  await page.waitForSelector("#login-user");
  await page.fill("#login-user", username);
  await page.fill("#login-pass", password);
  await page.click("form button[type=submit]");
  await page.waitForSelector("h1:has-text('Overview')");
}

async function logout(page) {
  await page.click(".topbar button:has-text('Log out')");
  await page.waitForSelector("#login-user");
}

/** axe-core's WCAG 2.1 A/AA violations on the page as it is now (rule and where, in short). */
async function audit(page) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(AXE);
  return page.evaluate(async () => {
    const tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
    const res = await window.axe.run(document, { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] });
    return res.violations.map((v) => ({ rule: v.id, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")) }));
  });
}

/** The user names the table lists, in order. */
async function listed(page) {
  return (await page.locator("tbody tr td strong").allInnerTexts()).map((t) => t.trim());
}

await main(async (browser) => {
  const out = { axe: {} };
  // bypassCSP only lets the audit load axe-core into the page; the app itself needs nothing.
  const { ctx, record } = await newContext(browser, WIDE, { bypassCSP: true });
  const page = await ctx.newPage();

  // -- the admin adds a viewer -------------------------------------------------------------------
  await login(page);
  await page.click("nav a:has-text('Users')");
  await page.waitForSelector("h1:has-text('Users')");
  await page.waitForSelector("tbody tr");
  out.initialUsers = await listed(page);
  out.ownRowButtons = await page.locator("tbody tr", { hasText: "(you)" }).locator("button").allInnerTexts();

  await page.fill("#nu-name", VIEWER);
  await page.fill("#nu-pass", "short");
  const consoleBefore = record.console.length;
  await page.click("#add-user button[type=submit]");
  out.shortPasswordError = (await page.locator("#nu-pass-err").innerText()).trim();
  out.shortPasswordInvalid = await page.getAttribute("#nu-pass", "aria-invalid");
  out.axe.adminWithError = await audit(page);
  await page.waitForTimeout(300); // the console note may trail the page's update
  // the refused call is the one console line this page may cause (the browser's 400 note)
  out.consoleFromRefusal = record.console.slice(consoleBefore).map((m) => m.text);
  record.console.splice(consoleBefore);

  await page.fill("#nu-pass", FIRST);
  await page.selectOption("#nu-role", "viewer");
  await page.click("#add-user button[type=submit]");
  await page.locator("tbody tr", { hasText: VIEWER }).waitFor();
  out.added = (await page.locator("#main .banner.ok").first().innerText()).trim();
  out.addErrorGone = (await page.locator("#nu-pass-err").count()) === 0;
  out.viewerRole = (await page.locator("tbody tr", { hasText: VIEWER }).locator("td").nth(1).innerText()).trim();
  out.rowButtons = await page.locator("tbody tr", { hasText: VIEWER }).locator("button").allInnerTexts();
  await page.locator("tbody tr", { hasText: VIEWER }).locator("button:has-text('Reset password')").click();
  out.resetFocus = await page.evaluate(() => document.activeElement?.id ?? "");
  out.axe.adminResetOpen = await audit(page);
  await page.click("form[id^='reset-'] button:has-text('Cancel')");
  await logout(page);

  // -- the viewer: no admin controls, changes their own password ---------------------------------
  await loginAs(page, VIEWER, FIRST);
  out.viewerNav = await page.locator("nav a").allInnerTexts();
  await page.click(".topbar a.user");
  await page.waitForSelector("h1:has-text('Your account')");
  out.viewerFocus = await page.evaluate(() => document.activeElement?.id ?? "");
  out.viewerTables = await page.locator("#main table").count();
  out.viewerAddForm = await page.locator("#add-user").count();
  out.viewerButtons = await page.locator("#main button").allInnerTexts();
  out.axe.viewer = await audit(page);
  await page.fill("#cp-current", FIRST);
  await page.fill("#cp-new", SECOND);
  await page.fill("#cp-again", SECOND);
  await page.click("#my-password button[type=submit]");
  await page.waitForSelector("#my-password .banner.ok:visible");
  out.changed = (await page.locator("#my-password .banner.ok").innerText()).trim();
  out.stillLoggedIn = (await page.textContent(".topbar .user")).trim();
  await logout(page);
  await loginAs(page, VIEWER, SECOND); // the new password works
  out.viewerSecondLogin = (await page.textContent(".topbar .user")).trim();
  await logout(page);

  // -- the admin deletes the viewer --------------------------------------------------------------
  await login(page);
  await page.click("nav a:has-text('Users')");
  await page.locator("tbody tr", { hasText: VIEWER }).waitFor();
  const row = page.locator("tbody tr", { hasText: VIEWER });
  out.viewerLastLogin = (await row.locator("td").nth(3).innerText()).trim();
  await shot(page, "users");
  await row.locator("button:has-text('Delete')").click(); // lib.mjs accepts the confirmation
  await page.waitForSelector(`#main .banner.ok:has-text('Deleted ${VIEWER}')`);
  out.afterDelete = await listed(page);
  log("users after delete:", out.afterDelete.join(", "));
  await ctx.close();
  return { ...out, ...record };
});
