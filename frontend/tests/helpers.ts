// Shared set-up for the page tests: an in-memory server (createRouterTransport) behind the
// app's api(), a memory-history router, and the session role the page sees.
import { afterEach } from "vitest";
import { enableAutoUnmount, flushPromises, mount, type BaseWrapper, type VueWrapper } from "@vue/test-utils";
import { createRouterTransport, type ConnectRouter } from "@connectrpc/connect";
import { createMemoryHistory, createRouter, type Router } from "vue-router";
import { defineComponent, h, type Component } from "vue";
import { useTransport } from "../src/api/client";
import { events, session } from "../src/stores/session";

// A page left mounted by a failed test would keep reacting to events in the next one.
enableAutoUnmount(afterEach);

/** Points api() at handlers registered on a Connect router (no network involved). */
export function serve(routes: (router: ConnectRouter) => void): void {
  useTransport(createRouterTransport(routes));
}

/** Logs the page in as `role` without a Login call, and forgets earlier events. */
export function loginAs(role: "admin" | "viewer" | ""): void {
  events.reset();
  Object.assign(session, { checked: true, loggedIn: role !== "", username: role ? `${role}-user` : "", role, error: "" });
}

const Elsewhere = defineComponent({ name: "Elsewhere", render: () => h("div", "elsewhere") });

export interface Mounted {
  wrapper: VueWrapper;
  router: Router;
}

/**
 * Mounts a page at `url` with a router whose `pattern` route is that page; every other path
 * leads to a placeholder, so links and redirects can be followed and checked.
 */
export async function mountPage(page: Component, url = "/", pattern = url.split("?")[0]): Promise<Mounted> {
  const router = createRouter({
    history: createMemoryHistory(),
    routes: [
      { path: pattern, component: page },
      { path: "/:rest(.*)*", component: Elsewhere },
    ],
  });
  await router.push(url);
  await router.isReady();
  const wrapper = mount(page, { global: { plugins: [router] }, attachTo: document.body });
  await flushPromises();
  return { wrapper, router };
}

/** The visible text of every element matching `selector`, trimmed and with spaces collapsed. */
export function texts(w: BaseWrapper<Node>, selector: string): string[] {
  return w.findAll(selector).map((e) => e.text().replace(/\s+/g, " ").trim());
}

/** Label -> value of each `.stat` tile ("active runs" -> "1"). */
export function stats(w: BaseWrapper<Node>): Record<string, string> {
  return Object.fromEntries(w.findAll(".stat").map((s) => [s.find(".label").text().replace(/\s+/g, " ").trim(), s.find(".value").text().trim()]));
}

/** The button whose text is exactly `label` (undefined when there is none). */
export function button(w: BaseWrapper<Node>, label: string) {
  return w.findAll("button").find((b) => b.text().trim() === label);
}
