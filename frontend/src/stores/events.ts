// The tab's one WatchRun stream (run_id "": every run and participant), shared by all pages.
// Browsers allow 6 HTTP/1.1 connections per host, so pages subscribe here instead of opening
// their own streams. Events are deduplicated by seq; after a drop the stream reconnects with
// exponential backoff and resumes after the last seq seen.
import { Code, ConnectError } from "@connectrpc/connect";
import { reactive, shallowRef } from "vue";
import type { Event } from "../gen/fedmetamal/v1/control_pb";

export type StreamStatus = "idle" | "connecting" | "live" | "retrying" | "unauthenticated" | "stopped";

export interface EventSource {
  /** Where to start when nothing was seen yet (GetServerInfo.last_event_seq, minus a replay). */
  startSeq(): Promise<bigint>;
  /** WatchRun("", afterSeq), ending when the signal aborts. */
  watch(afterSeq: bigint, signal: AbortSignal): AsyncIterable<Event>;
}

export interface EventStoreOptions {
  keep?: number; // events kept for logs
  baseDelayMs?: number;
  maxDelayMs?: number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  onUnauthenticated?: () => void;
}

type Handler = (ev: Event) => void;

function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

export class EventStore {
  readonly state = reactive({
    status: "idle" as StreamStatus,
    lastSeq: 0,
    error: "",
    attempt: 0,
  });
  /** The most recent events, oldest first (a new array on every change). */
  readonly recent = shallowRef<Event[]>([]);

  private last = 0n;
  private started = false;
  private abort: AbortController | null = null;
  private handlers = new Set<Handler>();
  private readonly opts: Required<Omit<EventStoreOptions, "onUnauthenticated">> &
    Pick<EventStoreOptions, "onUnauthenticated">;

  constructor(
    private readonly source: EventSource,
    opts: EventStoreOptions = {},
  ) {
    this.opts = {
      keep: opts.keep ?? 1000,
      baseDelayMs: opts.baseDelayMs ?? 500,
      maxDelayMs: opts.maxDelayMs ?? 15000,
      sleep: opts.sleep ?? defaultSleep,
      onUnauthenticated: opts.onUnauthenticated,
    };
  }

  get lastSeq(): bigint {
    return this.last;
  }

  /** Receive every new event (not the ones seen before subscribing). */
  subscribe(fn: Handler): () => void {
    this.handlers.add(fn);
    return () => this.handlers.delete(fn);
  }

  /** Takes one event: ignored when its seq was seen already. Returns whether it was new. */
  ingest(ev: Event): boolean {
    if (ev.seq <= this.last) return false;
    this.last = ev.seq;
    this.state.lastSeq = Number(ev.seq);
    const next = this.recent.value.concat(ev);
    this.recent.value = next.length > this.opts.keep ? next.slice(next.length - this.opts.keep) : next;
    for (const fn of this.handlers) {
      try {
        fn(ev);
      } catch (err) {
        console.warn("event handler failed", err);
      }
    }
    return true;
  }

  /** The backoff before reconnect attempt n (1-based): base * 2^(n-1), capped. */
  delay(attempt: number): number {
    return Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  }

  /** Starts the stream loop (once); resolves when the loop ends (stop() or unauthenticated). */
  start(): Promise<void> {
    if (this.started) return Promise.resolve();
    this.started = true;
    const ctrl = new AbortController();
    this.abort = ctrl;
    return this.loop(ctrl.signal);
  }

  stop(): void {
    this.started = false;
    this.abort?.abort();
    this.abort = null;
    this.state.status = "stopped";
  }

  /** Forget everything (after logout, so another user starts fresh). */
  reset(): void {
    this.stop();
    this.last = 0n;
    this.state.lastSeq = 0;
    this.state.attempt = 0;
    this.state.error = "";
    this.recent.value = [];
    this.state.status = "idle";
  }

  private async loop(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    let initialised = this.last > 0n;
    while (!signal.aborted) {
      this.state.status = attempt === 0 ? "connecting" : "retrying";
      try {
        if (!initialised) {
          const seq = await this.source.startSeq();
          if (seq > this.last) {
            this.last = seq;
            this.state.lastSeq = Number(seq);
          }
          initialised = true;
        }
        this.state.status = "live";
        for await (const ev of this.source.watch(this.last, signal)) {
          if (attempt > 0) {
            attempt = 0;
            this.state.attempt = 0;
          }
          this.state.error = "";
          this.ingest(ev);
        }
        if (signal.aborted) break;
        // The server ended the stream (shutdown): reconnect like after an error.
        attempt += 1;
      } catch (err) {
        if (signal.aborted) break;
        const e = ConnectError.from(err);
        if (e.code === Code.Unauthenticated) {
          this.state.status = "unauthenticated";
          this.state.error = e.rawMessage;
          this.started = false;
          this.opts.onUnauthenticated?.();
          return;
        }
        attempt += 1;
        this.state.error = e.rawMessage || String(err);
      }
      this.state.attempt = attempt;
      this.state.status = "retrying";
      await this.opts.sleep(this.delay(attempt), signal);
    }
  }
}
