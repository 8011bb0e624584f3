// Small composables shared by the pages.
import { onBeforeUnmount, ref } from "vue";
import type { Event } from "../gen/fedmetamal/v1/control_pb";
import { errorMessage } from "../api/client";
import { events } from "../stores/session";

/** Subscribes to the tab's event stream for the life of the component. */
export function useEvents(fn: (ev: Event) => void): void {
  const off = events.subscribe(fn);
  onBeforeUnmount(off);
}

/** Runs fn at most once per `ms` (trailing call kept), for refreshes driven by events. */
export function throttle(fn: () => void, ms: number): () => void {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let last = 0;
  return () => {
    const wait = Math.max(0, last + ms - Date.now());
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn();
    }, wait);
  };
}

/** Loading flag and page-level error message around an async loader. */
export function useLoader<T>(load: () => Promise<T>) {
  const loading = ref(false);
  const error = ref("");
  const loaded = ref(false);
  async function run(): Promise<T | undefined> {
    loading.value = true;
    try {
      const v = await load();
      error.value = "";
      loaded.value = true;
      return v;
    } catch (err) {
      error.value = errorMessage(err);
      return undefined;
    } finally {
      loading.value = false;
    }
  }
  return { loading, error, loaded, run };
}

export function stateClass(state: string): string {
  switch (state) {
    case "running":
    case "approved":
    case "completed":
    case "online":
    case "training":
      return "ok";
    case "paused":
    case "pending":
    case "created":
      return "warn";
    case "failed":
    case "revoked":
    case "stopped":
      return "bad";
    default:
      return "muted";
  }
}
