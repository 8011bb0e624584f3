// Who is logged in, and the tab's event stream tied to that session.
import { computed, reactive } from "vue";
import { api, errorMessage, onUnauthenticated } from "../api/client";
import { EventStore } from "./events";

/** Events replayed when the tab opens, so logs are not empty after a reload. */
export const REPLAY_EVENTS = 500n;

export const session = reactive({
  checked: false,
  loggedIn: false,
  username: "",
  role: "",
  error: "",
});

export const isAdmin = computed(() => session.role === "admin");

export const events = new EventStore(
  {
    async startSeq() {
      const info = await api().control.getServerInfo({});
      const last = info.lastEventSeq;
      return last > REPLAY_EVENTS ? last - REPLAY_EVENTS : 0n;
    },
    watch(afterSeq, signal) {
      return api().control.watchRun({ runId: "", afterSeq }, { signal });
    },
  },
  { onUnauthenticated: () => markLoggedOut() },
);

function markLoggedOut(): void {
  session.loggedIn = false;
  session.username = "";
  session.role = "";
  events.reset();
}

onUnauthenticated(() => {
  if (session.loggedIn) markLoggedOut();
});

/** Asks the server once per page load whether the session cookie is valid. */
export async function checkSession(): Promise<void> {
  try {
    const me = await api().dashboard.whoAmI({});
    session.loggedIn = me.loggedIn;
    session.username = me.username;
    session.role = me.role;
    session.error = "";
  } catch (err) {
    session.loggedIn = false;
    session.error = errorMessage(err);
  } finally {
    session.checked = true;
  }
  if (session.loggedIn) void events.start();
}

export async function login(username: string, password: string): Promise<void> {
  const reply = await api().dashboard.login({ username, password });
  session.loggedIn = true;
  session.username = reply.username;
  session.role = reply.role;
  session.error = "";
  session.checked = true;
  events.reset();
  void events.start();
}

export async function logout(): Promise<void> {
  try {
    await api().dashboard.logout({});
  } finally {
    markLoggedOut();
  }
}
