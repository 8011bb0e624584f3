import { beforeEach, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { flushPromises } from "@vue/test-utils";
import { ControlService, ServerInfoSchema } from "../src/gen/fedmetamal/v1/control_pb";
import { DashboardService, LoginReplySchema, type LoginRequest } from "../src/gen/fedmetamal/v1/dashboard_pb";
import { events, session } from "../src/stores/session";
import LoginView from "../src/views/LoginView.vue";
import { loginAs, mountPage, serve } from "./helpers";

function server(seen: LoginRequest[], opts: { down?: boolean } = {}) {
  serve(({ service }) => {
    service(DashboardService, {
      login: (req) => {
        seen.push(req);
        if (opts.down) throw new ConnectError("database is locked", Code.Unavailable);
        if (req.password !== "correct horse") throw new ConnectError("wrong user name or password", Code.Unauthenticated);
        return create(LoginReplySchema, { username: req.username, role: "viewer", expiresUnix: 0 });
      },
    });
    // The event stream the store opens after a login: it stays quiet.
    service(ControlService, {
      getServerInfo: () => create(ServerInfoSchema, { lastEventSeq: 0n }),
      async *watchRun(_req, ctx) {
        await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
      },
    });
  });
}

describe("Login page", () => {
  let seen: LoginRequest[];
  beforeEach(() => {
    loginAs("");
    seen = [];
  });

  it("says the password was wrong and stays on the page", async () => {
    server(seen);
    const { wrapper: w, router } = await mountPage(LoginView, "/login?next=/participants", "/login");
    expect(w.find('label[for="login-user"]').text()).toBe("Username");
    expect(w.find('label[for="login-pass"]').text()).toBe("Password");
    expect((w.find("#login-user").element as HTMLInputElement).value).toBe("admin");

    await w.find("#login-pass").setValue("guess");
    await w.find("form").trigger("submit");
    await flushPromises();
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ username: "admin", password: "guess" });
    expect(w.find('[role="alert"]').text()).toBe("wrong user name or password");
    expect(router.currentRoute.value.path).toBe("/login");
    expect(session.loggedIn).toBe(false);
    expect(w.find('button[type="submit"]').attributes("disabled")).toBeUndefined();
  });

  it("logs in and goes to the page asked for in `next`", async () => {
    server(seen);
    const { wrapper: w, router } = await mountPage(LoginView, "/login?next=/runs/r-7%3Ftab%3Dlog", "/login");
    await w.find("#login-user").setValue("  ann ");
    await w.find("#login-pass").setValue("correct horse");
    await w.find("form").trigger("submit");
    await flushPromises();
    expect(seen[0]).toMatchObject({ username: "ann", password: "correct horse" });
    expect(router.currentRoute.value.fullPath).toBe("/runs/r-7?tab=log");
    expect(session).toMatchObject({ loggedIn: true, username: "ann", role: "viewer" });
    // The password does not linger in the form.
    expect((w.find("#login-pass").element as HTMLInputElement).value).toBe("");
    events.reset();
  });

  it("goes to the overview when `next` is not a path on this site", async () => {
    server(seen);
    const { wrapper: w, router } = await mountPage(LoginView, "/login?next=https://evil.example/", "/login");
    await w.find("#login-pass").setValue("correct horse");
    await w.find("form").trigger("submit");
    await flushPromises();
    expect(router.currentRoute.value.fullPath).toBe("/");
    events.reset();
  });

  it("tells an unreachable server apart from a wrong password", async () => {
    server(seen, { down: true });
    const { wrapper: w } = await mountPage(LoginView, "/login", "/login");
    await w.find("#login-pass").setValue("correct horse");
    await w.find("form").trigger("submit");
    await flushPromises();
    expect(w.find('[role="alert"]').text()).toBe("The server is unavailable: database is locked");
  });

  it("shows why the session ended when the router sent the user here", async () => {
    server(seen);
    session.error = "Your session has ended. Please log in again.";
    const { wrapper: w } = await mountPage(LoginView, "/login", "/login");
    expect(w.find('[role="alert"]').text()).toBe("Your session has ended. Please log in again.");
  });
});
