// The login page: a wrong password is refused on the page (the one console error the dashboard
// may show is that call's 401), the right one opens the overview. Screenshot: login.
import { BASE, log, main, newContext, shot, PASSWORD } from "./lib.mjs";

await main(async (browser) => {
  const { ctx, record } = await newContext(browser);
  const page = await ctx.newPage();
  await page.goto(`${BASE}/runs/new`);
  await page.waitForSelector("#login-user");
  const redirectedTo = new URL(page.url()).pathname;
  await shot(page, "login");
  await page.fill("#login-user", "admin");
  await page.fill("#login-pass", "not-the-password");
  await page.click("form button[type=submit]");
  const banner = await page.waitForSelector(".banner.bad");
  const wrongPasswordMessage = (await banner.textContent()).trim();
  const consoleAfterWrong = [...record.console];
  log("wrong password:", wrongPasswordMessage);
  await page.fill("#login-pass", PASSWORD);
  await page.click("form button[type=submit]");
  await page.waitForSelector("h1:has-text('New run'), h1:has-text('Overview')");
  const afterLogin = new URL(page.url()).pathname;
  const user = (await page.textContent(".topbar .user")).trim();
  await ctx.close();
  return { redirectedTo, wrongPasswordMessage, consoleAfterWrong, afterLogin, user, ...record };
});
