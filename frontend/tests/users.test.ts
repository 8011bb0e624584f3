import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { flushPromises, mount, type VueWrapper } from "@vue/test-utils";
import { createMemoryHistory, createRouter } from "vue-router";
import { defineComponent, h } from "vue";
import { DashboardService, FieldErrorSchema, UserSchema, type User } from "../src/gen/fedmetamal/v1/dashboard_pb";
import { useTransport } from "../src/api/client";
import { session } from "../src/stores/session";
import UsersView from "../src/views/UsersView.vue";

const now = Date.now() / 1000;

/** A refused call as the server sends it: the message, and a FieldError naming the input. */
function refused(code: Code, message: string, path = ""): ConnectError {
  const details = path ? [{ desc: FieldErrorSchema, value: { path, message } }] : [];
  return new ConnectError(message, code, undefined, details);
}

interface Calls {
  list: number;
  create: { username: string; password: string; role: string }[];
  update: { username: string; role: string; newPassword: string }[];
  remove: string[];
  change: { currentPassword: string; newPassword: string }[];
}

/** An in-memory DashboardService with the server's rules, recording what the page asked. */
function fakeServer(opts: { users?: User[]; failList?: number } = {}): Calls {
  const users: User[] = opts.users ?? [
    create(UserSchema, { username: "admin", role: "admin", createdUnix: now - 86400, lastLoginUnix: now - 60, activeSessions: 1 }),
    create(UserSchema, { username: "ann", role: "viewer", createdUnix: now - 3600, lastLoginUnix: 0, activeSessions: 0 }),
  ];
  let failList = opts.failList ?? 0;
  const calls: Calls = { list: 0, create: [], update: [], remove: [], change: [] };
  const find = (name: string) => {
    const u = users.find((x) => x.username === name);
    if (!u) throw refused(Code.NotFound, `No user '${name}'.`);
    return u;
  };
  useTransport(
    createRouterTransport(({ service }) => {
      service(DashboardService, {
        listUsers() {
          calls.list++;
          if (failList > 0) {
            failList--;
            throw new ConnectError("database is locked", Code.Unavailable);
          }
          return { users: users.map((u) => create(UserSchema, u)) };
        },
        createUser(req) {
          calls.create.push({ username: req.username, password: req.password, role: req.role });
          if (req.password.length < 10) throw refused(Code.InvalidArgument, "The password is shorter than 10 characters. Choose a longer password.", "password");
          if (users.some((u) => u.username === req.username)) throw refused(Code.AlreadyExists, `A user '${req.username}' exists already. Choose another name.`, "username");
          const u = create(UserSchema, { username: req.username, role: req.role, createdUnix: now });
          users.push(u);
          return u;
        },
        updateUser(req) {
          calls.update.push({ username: req.username, role: req.role, newPassword: req.newPassword });
          const u = find(req.username);
          if (req.newPassword && req.newPassword.length < 10) throw refused(Code.InvalidArgument, "The password is shorter than 10 characters. Choose a longer password.", "password");
          if (req.role) u.role = req.role;
          u.activeSessions = 0;
          return u;
        },
        deleteUser(req) {
          calls.remove.push(req.username);
          const u = find(req.username);
          if (u.role === "admin" && users.filter((x) => x.role === "admin").length === 1) {
            throw refused(Code.FailedPrecondition, `'${u.username}' is the last admin; you cannot delete it. Make another user admin first.`);
          }
          users.splice(users.indexOf(u), 1);
          return {};
        },
        changePassword(req) {
          calls.change.push({ currentPassword: req.currentPassword, newPassword: req.newPassword });
          if (req.currentPassword !== "old password 1") throw refused(Code.InvalidArgument, "The current password is wrong. Type it again.", "current_password");
          if (req.newPassword.length < 10) throw refused(Code.InvalidArgument, "The password is shorter than 10 characters. Choose a longer password.", "password");
          return {};
        },
      });
    }),
  );
  return calls;
}

function loginAs(username: string, role: "admin" | "viewer"): void {
  Object.assign(session, { checked: true, loggedIn: true, username, role, error: "" });
}

let wrapper: VueWrapper | null = null;

async function mountUsers(url = "/users"): Promise<VueWrapper> {
  const router = createRouter({
    history: createMemoryHistory(),
    routes: [
      { path: "/users", component: UsersView },
      { path: "/:rest(.*)*", component: defineComponent({ render: () => h("div", "elsewhere") }) },
    ],
  });
  await router.push(url);
  await router.isReady();
  wrapper = mount(UsersView, { global: { plugins: [router] }, attachTo: document.body });
  await flushPromises();
  return wrapper;
}

function row(w: VueWrapper, name: string) {
  const found = w.findAll("tbody tr").find((r) => r.find("td strong").exists() && r.find("td strong").text() === name);
  if (!found) throw new Error(`no row for ${name}: ${w.find("tbody").text()}`);
  return found;
}

function buttonIn(el: ReturnType<VueWrapper["find"]>, label: string) {
  const b = el.findAll("button").find((x) => x.text().startsWith(label));
  if (!b) throw new Error(`no button ${label} in: ${el.text()}`);
  return b;
}

async function submit(w: VueWrapper, selector: string): Promise<void> {
  await w.find(selector).trigger("submit");
  await flushPromises();
}

let confirmSpy: ReturnType<typeof vi.fn>;

beforeEach(() => {
  confirmSpy = vi.fn(() => true);
  vi.stubGlobal("confirm", confirmSpy);
});

afterEach(() => {
  wrapper?.unmount();
  wrapper = null;
  vi.unstubAllGlobals();
});

describe("UsersView for an admin", () => {
  it("lists accounts with role, created time, last login and sessions, and labels every field", async () => {
    fakeServer();
    loginAs("admin", "admin");
    const w = await mountUsers();
    expect(w.find("h1").text()).toBe("Users");
    expect(w.findAll("thead th").map((t) => t.text())).toEqual(["User", "Role", "Created", "Last login", "Open sessions", "Actions"]);
    const ann = row(w, "ann");
    const cells = ann.findAll("td").map((c) => c.text());
    expect(cells[1]).toBe("viewer");
    expect(cells[2]).not.toBe("—");
    expect(cells[3]).toBe("never");
    expect(ann.findAll("button").map((b) => b.text())).toEqual(["Make admin ann", "Reset password of ann", "Delete ann"]);
    // your own row offers no role change and no delete: it points at your password form
    const me = row(w, "admin");
    expect(me.text()).toContain("(you)");
    expect(me.findAll("button").map((b) => b.text())).toEqual(["Change my password"]);
    await buttonIn(me, "Change my password").trigger("click");
    expect(document.activeElement?.id).toBe("cp-current");
    expect(w.find(".page-head .muted").text()).toBe("2 accounts · 1 admin · 1 viewer");
    for (const el of w.findAll("input, select")) {
      expect(w.find(`label[for="${el.attributes("id")}"]`).exists(), el.attributes("id")).toBe(true);
    }
  });

  it("shows the server's validation next to the add-user field it concerns, then adds the user", async () => {
    const calls = fakeServer();
    loginAs("admin", "admin");
    const w = await mountUsers();
    await w.find("#nu-name").setValue("  bob ");
    await w.find("#nu-pass").setValue("short");
    await w.find("#nu-role").setValue("admin");
    await submit(w, "#add-user");
    expect(calls.create).toEqual([{ username: "bob", password: "short", role: "admin" }]);
    expect(w.find("#nu-pass-err").text()).toBe("The password is shorter than 10 characters. Choose a longer password.");
    expect(w.find("#nu-pass").attributes("aria-invalid")).toBe("true");
    expect(w.find("#nu-name-err").exists()).toBe(false);
    expect(w.find("#add-user .banner.bad").exists()).toBe(false);

    await w.find("#nu-name").setValue("ann");
    await w.find("#nu-pass").setValue("long enough password");
    await submit(w, "#add-user");
    expect(w.find("#nu-name-err").text()).toContain("exists already");
    expect(w.find("#nu-pass-err").exists()).toBe(false);

    await w.find("#nu-name").setValue("bob");
    await submit(w, "#add-user");
    expect(row(w, "bob").findAll("td")[1].text()).toBe("admin");
    expect(w.find(".banner.ok").text()).toBe("Added bob as an admin.");
    expect((w.find("#nu-name").element as HTMLInputElement).value).toBe("");
    expect((w.find("#nu-pass").element as HTMLInputElement).value).toBe("");
    expect(w.find("#nu-name-err").exists()).toBe(false);
  });

  it("changes a role only after confirmation", async () => {
    const calls = fakeServer();
    loginAs("admin", "admin");
    const w = await mountUsers();
    confirmSpy.mockReturnValueOnce(false);
    await buttonIn(row(w, "ann"), "Make admin").trigger("click");
    await flushPromises();
    expect(calls.update).toEqual([]);
    await buttonIn(row(w, "ann"), "Make admin").trigger("click");
    await flushPromises();
    expect(confirmSpy.mock.calls[1][0]).toMatch(/Make ann an admin .*sessions end/);
    expect(calls.update).toEqual([{ username: "ann", role: "admin", newPassword: "" }]);
    expect(row(w, "ann").findAll("td")[1].text()).toBe("admin");
    expect(buttonIn(row(w, "ann"), "Make viewer").exists()).toBe(true);
    expect(w.find(".banner.ok").text()).toContain("ann is now an admin; their sessions have ended.");
  });

  it("resets another user's password in an inline form with the server's message", async () => {
    const calls = fakeServer();
    loginAs("admin", "admin");
    const w = await mountUsers();
    const toggle = buttonIn(row(w, "ann"), "Reset password");
    await toggle.trigger("click");
    await flushPromises();
    expect(toggle.attributes("aria-expanded")).toBe("true");
    expect(document.activeElement?.id).toBe("reset-pass");
    expect(w.find('label[for="reset-pass"]').text()).toBe("New password for ann");
    await w.find("#reset-pass").setValue("tiny");
    await submit(w, "#reset-ann");
    expect(w.find("#reset-pass-err").text()).toContain("shorter than 10");
    await w.find("#reset-pass").setValue("a fresh passphrase");
    await submit(w, "#reset-ann");
    expect(calls.update.at(-1)).toEqual({ username: "ann", role: "", newPassword: "a fresh passphrase" });
    expect(w.find("#reset-ann").exists()).toBe(false);
    expect(w.find(".banner.ok").text()).toContain("New password set for ann");
  });

  it("deletes after confirmation", async () => {
    const calls = fakeServer({
      users: [
        create(UserSchema, { username: "admin", role: "admin", createdUnix: now }),
        create(UserSchema, { username: "ann", role: "viewer", createdUnix: now }),
        create(UserSchema, { username: "root2", role: "admin", createdUnix: now }),
      ],
    });
    loginAs("root2", "admin");
    const w = await mountUsers();
    await buttonIn(row(w, "ann"), "Delete").trigger("click");
    await flushPromises();
    expect(confirmSpy.mock.calls[0][0]).toMatch(/Delete the account ann\?.*cannot be undone/);
    expect(calls.remove).toEqual(["ann"]);
    expect(w.findAll("tbody tr strong").map((s) => s.text())).toEqual(["admin", "root2"]);
    expect(w.find(".banner.ok").text()).toBe("Deleted ann.");
    // another admin may go while one (root2) stays
    await buttonIn(row(w, "admin"), "Delete").trigger("click");
    await flushPromises();
    expect(calls.remove).toEqual(["ann", "admin"]);
    expect(w.findAll("tbody tr strong").map((s) => s.text())).toEqual(["root2"]);
  });

  it("shows the server's reason when it refuses to delete the last admin", async () => {
    fakeServer({
      users: [
        create(UserSchema, { username: "admin", role: "admin", createdUnix: now }),
        create(UserSchema, { username: "me", role: "viewer", createdUnix: now }),
      ],
    });
    // a page still showing admin buttons to someone the server no longer treats as the only admin
    loginAs("me-admin", "admin");
    const w = await mountUsers();
    await buttonIn(row(w, "admin"), "Delete").trigger("click");
    await flushPromises();
    expect(w.find(".banner.bad[role=alert]").text()).toBe("'admin' is the last admin; you cannot delete it. Make another user admin first.");
    expect(row(w, "admin").exists()).toBe(true);
  });

  it("explains a failed load and retries", async () => {
    const calls = fakeServer({ failList: 1 });
    loginAs("admin", "admin");
    const w = await mountUsers();
    const banner = w.find(".banner.bad");
    expect(banner.text()).toContain("Could not load the users: The server is unavailable: database is locked");
    expect(w.find("table").exists()).toBe(false);
    await buttonIn(banner, "Retry").trigger("click");
    await flushPromises();
    expect(calls.list).toBe(2);
    expect(w.find(".banner.bad").exists()).toBe(false);
    expect(row(w, "ann").exists()).toBe(true);
  });

  it("explains an empty list", async () => {
    fakeServer({ users: [] });
    loginAs("admin", "admin");
    const w = await mountUsers();
    expect(w.find(".empty").text()).toContain("fedmetamal users add");
  });
});

describe("UsersView for a viewer", () => {
  it("offers only the own-password form and makes no admin call", async () => {
    const calls = fakeServer();
    loginAs("ann", "viewer");
    const w = await mountUsers("/users#my-password");
    expect(w.find("h1").text()).toBe("Your account");
    expect(calls.list).toBe(0);
    expect(w.find("table").exists()).toBe(false);
    expect(w.find("#add-user").exists()).toBe(false);
    expect(w.findAll("button").map((b) => b.text())).toEqual(["Change password"]);
    expect(w.find("#my-password").text()).toContain("Only an admin can add users");
    expect(document.activeElement?.id).toBe("cp-current"); // the top bar's link lands on the form
  });

  it("checks the repeated password, shows the server's messages per field, then confirms", async () => {
    const calls = fakeServer();
    loginAs("ann", "viewer");
    const w = await mountUsers();
    await w.find("#cp-current").setValue("guess");
    await w.find("#cp-new").setValue("new password 2");
    await w.find("#cp-again").setValue("new password 3");
    await submit(w, "#my-password");
    expect(calls.change).toEqual([]);
    expect(w.find("#cp-again-err").text()).toContain("differ");

    await w.find("#cp-again").setValue("new password 2");
    await submit(w, "#my-password");
    expect(w.find("#cp-current-err").text()).toBe("The current password is wrong. Type it again.");
    expect(w.find("#cp-current").attributes("aria-invalid")).toBe("true");
    expect(w.find("#cp-again-err").exists()).toBe(false);

    await w.find("#cp-current").setValue("old password 1");
    await submit(w, "#my-password");
    expect(calls.change.at(-1)).toEqual({ currentPassword: "old password 1", newPassword: "new password 2" });
    expect(w.find("#cp-current-err").exists()).toBe(false);
    expect(w.find("#my-password .banner.ok").text()).toContain("Your password is changed");
    for (const id of ["#cp-current", "#cp-new", "#cp-again"]) {
      expect((w.find(id).element as HTMLInputElement).value).toBe("");
    }
  });
});
