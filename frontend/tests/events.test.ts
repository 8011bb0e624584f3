import { describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { ControlService, EventSchema, type Event } from "../src/gen/fedmetamal/v1/control_pb";
import { EventStore, type EventSource } from "../src/stores/events";

const ev = (seq: number, kind = "log", runId = "r1") => create(EventSchema, { seq: BigInt(seq), kind, runId });

function sourceFrom(transport: ReturnType<typeof createRouterTransport>, start = 0n): EventSource {
  const client = createClient(ControlService, transport);
  return {
    startSeq: async () => start,
    watch: (afterSeq, signal) => client.watchRun({ runId: "", afterSeq }, { signal }),
  };
}

const noSleep = { sleep: async () => undefined };

describe("EventStore", () => {
  it("drops events whose seq was already seen", () => {
    const store = new EventStore({ startSeq: async () => 0n, watch: async function* () {} });
    const got: number[] = [];
    store.subscribe((e) => got.push(Number(e.seq)));
    for (const s of [1, 2, 2, 1, 3, 3]) store.ingest(ev(s));
    expect(got).toEqual([1, 2, 3]);
    expect(store.recent.value.map((e) => Number(e.seq))).toEqual([1, 2, 3]);
    expect(store.state.lastSeq).toBe(3);
  });

  it("keeps only the newest events for logs", () => {
    const store = new EventStore({ startSeq: async () => 0n, watch: async function* () {} }, { keep: 2 });
    for (const s of [1, 2, 3]) store.ingest(ev(s));
    expect(store.recent.value.map((e) => Number(e.seq))).toEqual([2, 3]);
  });

  it("reconnects after a drop and resumes after the last seq", async () => {
    const calls: bigint[] = [];
    const transport = createRouterTransport(({ service }) => {
      service(ControlService, {
        async *watchRun(req) {
          calls.push(req.afterSeq);
          if (calls.length === 1) {
            yield ev(11);
            yield ev(12);
            throw new ConnectError("connection reset", Code.Unavailable);
          }
          // The server replays from after_seq; an overlap must not be delivered twice.
          yield ev(12);
          yield ev(13);
          yield ev(14, "stop");
        },
      });
    });
    const store = new EventStore(sourceFrom(transport, 10n), noSleep);
    const got: number[] = [];
    store.subscribe((e: Event) => {
      got.push(Number(e.seq));
      if (e.kind === "stop") store.stop();
    });
    await store.start();
    expect(calls).toEqual([10n, 12n]);
    expect(got).toEqual([11, 12, 13, 14]);
    expect(store.state.status).toBe("stopped");
  });

  it("backs off exponentially between failed attempts, capped", async () => {
    const waits: number[] = [];
    let attempts = 0;
    const store = new EventStore(
      {
        startSeq: async () => 0n,
        watch: () => {
          attempts++;
          // eslint-disable-next-line require-yield
          return (async function* () {
            throw new ConnectError("down", Code.Unavailable);
          })();
        },
      },
      {
        baseDelayMs: 100,
        maxDelayMs: 500,
        sleep: async (ms) => {
          waits.push(ms);
          if (waits.length === 5) store.stop();
        },
      },
    );
    await store.start();
    expect(attempts).toBe(5);
    expect(waits).toEqual([100, 200, 400, 500, 500]);
  });

  it("stops for good and reports when the session is gone", async () => {
    let told = 0;
    const transport = createRouterTransport(({ service }) => {
      service(ControlService, {
        // eslint-disable-next-line require-yield
        async *watchRun() {
          throw new ConnectError("no session", Code.Unauthenticated);
        },
      });
    });
    const store = new EventStore(sourceFrom(transport), { ...noSleep, onUnauthenticated: () => told++ });
    await store.start();
    expect(store.state.status).toBe("unauthenticated");
    expect(told).toBe(1);
  });

  it("starts from the server's last seq when nothing was seen yet", async () => {
    const calls: bigint[] = [];
    const transport = createRouterTransport(({ service }) => {
      service(ControlService, {
        async *watchRun(req) {
          calls.push(req.afterSeq);
          yield ev(Number(req.afterSeq) + 1, "stop");
        },
      });
    });
    const store = new EventStore(sourceFrom(transport, 500n), noSleep);
    store.subscribe((e) => e.kind === "stop" && store.stop());
    await store.start();
    expect(calls).toEqual([500n]);
    expect(store.lastSeq).toBe(501n);
  });
});
