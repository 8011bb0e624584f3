// The participant flow in the browser: create a join token (no auto-approve), hand the shown
// `fedmetamal join ...` command to pytest, which starts a real participant process with it;
// see it pending, approve it, see it online and approved, revoke it, see it revoked.
// Screenshot: participants (the new participant waiting for approval, the join command shown).
import { log, login, main, newContext, shot, waitLive, ask } from "./lib.mjs";

const NAME = process.env.FMM_PARTICIPANT_NAME ?? "e2e-participant";

/** The participant's table row, once it shows; its state, online pill and activity. */
async function rowState(page) {
  const row = page.locator("tbody tr", { hasText: NAME });
  await row.waitFor({ timeout: 30000 });
  const cells = row.locator("td");
  return {
    state: (await cells.nth(1).innerText()).trim(),
    online: (await cells.nth(2).innerText()).trim(),
    activity: (await cells.nth(3).innerText()).trim(),
    rows: (await cells.nth(5).innerText()).trim(),
  };
}

async function waitRow(page, test, what, timeout = 45000) {
  const end = Date.now() + timeout;
  let last = null;
  while (Date.now() < end) {
    last = await rowState(page).catch(() => null);
    if (last && test(last)) return last;
    await page.waitForTimeout(200);
  }
  throw new Error(`the participant never showed ${what} (last: ${JSON.stringify(last)})`);
}

await main(async (browser) => {
  const out = { states: [] };
  const { ctx, record } = await newContext(browser);
  const page = await ctx.newPage();
  await login(page);
  await waitLive(page);
  await page.click("nav a:has-text('Participants')");
  await page.waitForSelector("h1:has-text('Participants')");
  out.emptyState = (await page.locator(".card .empty").allInnerTexts()).join(" ");
  await page.click("button:has-text('Invite participant')");
  await page.waitForSelector("#tok-auto");
  out.autoApproveDefault = await page.isChecked("#tok-auto");
  await page.uncheck("#tok-auto");
  await page.fill("#tok-note", "browser test");
  await page.click("form#invite button[type=submit]");
  const command = (await page.locator("pre.command").innerText()).trim();
  out.command = command;
  log("join command:", command);

  await ask("start_participant", { command, name: NAME });
  const pending = await waitRow(page, (s) => s.state === "pending", "pending");
  out.states.push({ step: "enrolled", ...pending });
  await page.waitForSelector(".banner.warn, .page-head .muted");
  out.headCounts = (await page.textContent(".page-head .muted")).trim();
  await shot(page, "participants");

  await page.locator("tbody tr", { hasText: NAME }).locator("button:has-text('Approve')").click();
  const approved = await waitRow(page, (s) => s.state === "approved" && s.online === "online", "approved and online");
  out.states.push({ step: "approved", ...approved });
  // The overview counts it as online.
  await page.click("nav a:has-text('Overview')");
  await page.waitForSelector(`.card li:has-text('${NAME}')`, { timeout: 20000 });
  out.overviewOnline = (await page.textContent(".stat:has(.label:has-text('participants online')) .value")).trim();
  await page.click("nav a:has-text('Participants')");

  await page.locator("tbody tr", { hasText: NAME }).locator("button:has-text('Revoke')").click();
  const revoked = await waitRow(page, (s) => s.state === "revoked", "revoked");
  out.states.push({ step: "revoked", ...revoked });
  out.revokeButtons = await page.locator("tbody tr", { hasText: NAME }).locator("button").count();
  out.participantAfterRevoke = await ask("participant_outcome");
  // The process has gone: the page shows it offline.
  out.states.push({ step: "after exit", ...(await waitRow(page, (s) => s.online === "offline", "offline")) });
  await ctx.close();
  return { ...out, ...record };
});
