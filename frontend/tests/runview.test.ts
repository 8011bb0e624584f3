// The Run page against an in-memory server: charts, the participation timeline, and a log that
// refills from ListEvents (history) and merges the live stream's events by seq.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { enableAutoUnmount, flushPromises, mount } from "@vue/test-utils";
import { createMemoryHistory, createRouter } from "vue-router";
import { defineComponent, h } from "vue";
import {
  ControlService,
  EventSchema,
  ParticipantSchema,
  RoundInfoSchema,
  RunSchema,
  type ListEventsRequest,
} from "../src/gen/fedmetamal/v1/control_pb";
import { useTransport } from "../src/api/client";
import { events, session } from "../src/stores/session";
import RunView from "../src/views/RunView.vue";

enableAutoUnmount(afterEach);

/** jsdom has no canvas: charts render as a labelled placeholder with their point count. */
const ChartStub = defineComponent({
  props: { datasets: { type: Array, required: true }, chartLabel: { type: String, required: true } },
  setup: (props) => () =>
    h("div", { class: "chart-stub", "aria-label": props.chartLabel, "data-points": (props.datasets as { data: unknown[] }[]).reduce((n, d) => n + d.data.length, 0) }),
});

const now = Date.now() / 1000;
const ev = (seq: number, kind: string, message: string, extra: { round?: number; participantId?: string; level?: string; runId?: string } = {}) =>
  create(EventSchema, { seq: BigInt(seq), runId: "r1", kind, message, level: "info", timeUnix: now - 100 + seq, ...extra });

/** 25 stored events of run r1, newest first: round 3 started (seq 24), p3 refused in it (25). */
const stored = Array.from({ length: 25 }, (_, i) => ev(i + 1, "log", `stored ${i + 1}`)).reverse();
stored[0] = ev(25, "update_rejected", "p3: offline", { round: 3, participantId: "p3", level: "warning" });
stored[1] = ev(24, "round_started", "round 3/5: 3 participant(s) sampled", { round: 3 });

function serve(opts: { failEvents?: boolean } = {}) {
  const asked: ListEventsRequest[] = [];
  useTransport(
    createRouterTransport(({ service }) => {
      service(ControlService, {
        getRun: () => create(RunSchema, { runId: "r1", name: "fedavg", state: "running", round: 2, rounds: 5, participantIds: ["p1", "p2", "p3"], createdUnix: now - 600 }),
        listRounds: () => ({
          rounds: [
            create(RoundInfoSchema, { round: 1, sampled: ["p1", "p2", "p3"], reported: ["p1", "p2", "p3"], metrics: { loss: 0.6, roc_auc: 0.8 } }),
            create(RoundInfoSchema, { round: 2, sampled: ["p1", "p2", "p3"], reported: ["p1"], rejected: { p2: "norm too large" }, metrics: { loss: 0.5, roc_auc: 0.85 } }),
          ],
        }),
        listParticipants: () => ({
          participants: [create(ParticipantSchema, { participantId: "p1", name: "lab-a", state: "approved", online: true })],
        }),
        listEvents: (req) => {
          asked.push(req);
          if (opts.failEvents) throw new ConnectError("the database is busy", Code.Unavailable);
          const older = req.beforeSeq === 0n ? stored : stored.filter((e) => e.seq < req.beforeSeq);
          const page = older.slice(0, Math.min(req.limit, 20)); // pages of 20 here
          return { events: page, hasMore: older.length > page.length };
        },
      });
    }),
  );
  return asked;
}

async function mountRun() {
  const router = createRouter({ history: createMemoryHistory(), routes: [{ path: "/runs/:id", component: RunView, props: true }, { path: "/:rest(.*)*", component: { render: () => null } }] });
  await router.push("/runs/r1");
  await router.isReady();
  const w = mount(RunView, { props: { id: "r1" }, global: { plugins: [router], stubs: { ChartCanvas: ChartStub } }, attachTo: document.body });
  await flushPromises();
  return w;
}

const logLines = (w: Awaited<ReturnType<typeof mountRun>>) => w.findAll("ol.log li").map((li) => li.text().replace(/\s+/g, " "));

describe("Run page", () => {
  beforeEach(() => {
    events.reset();
    Object.assign(session, { checked: true, loggedIn: true, username: "viewer-user", role: "viewer", error: "" });
  });

  it("draws the metric charts from the run's rounds", async () => {
    serve();
    const w = await mountRun();
    const charts = w.findAll(".chart-stub");
    expect(charts.map((c) => c.attributes("aria-label"))).toEqual(["Loss per round", "ROC AUC per round"]);
    expect(charts.map((c) => c.attributes("data-points"))).toEqual(["2", "2"]);
    expect(w.find(".progress-row").text()).toContain("round 3 in progress");
  });

  it("shows who took part in each round, in words as well as colours", async () => {
    serve();
    const w = await mountRun();
    const table = w.find("table.timeline");
    expect(table.findAll("thead th[data-round]").map((th) => th.text().replace(/\s+/g, " "))).toEqual(["round 1", "round 2", "round 3… (in progress)"]);
    const rows = table.findAll("tbody tr");
    expect(rows.map((r) => r.find("th").text())).toEqual(["lab-a", "p2", "p3"]);
    const states = rows.map((r) => r.findAll("td").map((td) => td.attributes("data-state")));
    expect(states).toEqual([
      ["reported", "reported", "running"],
      ["reported", "rejected", "running"],
      ["reported", "dropped", "rejected"],
    ]);
    const p2r2 = rows[1].findAll("td")[1].find("[role=img]");
    expect(p2r2.attributes("aria-label")).toBe("p2, round 2: update rejected: norm too large");
    expect(p2r2.attributes("title")).toBe(p2r2.attributes("aria-label"));
    expect(p2r2.text()).toBe("✗");
    expect(rows[2].findAll("td")[2].find("[role=img]").attributes("aria-label")).toBe("p3, round 3: update rejected: offline");
    // the scrolling region can be reached with the keyboard and is named by its heading
    const region = w.find(".tl-wrap");
    expect(region.attributes("tabindex")).toBe("0");
    expect(w.find(`#${region.attributes("aria-labelledby")}`).text()).toBe("Participation by round");
    expect(w.findAll(".tl-legend li").map((li) => li.text())).toContain("✗ rejected");
  });

  it("refills the log from the server, merges live events once, and pages back", async () => {
    const asked = serve();
    const w = await mountRun();
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatchObject({ runId: "r1", beforeSeq: 0n, limit: 300 });
    let lines = logLines(w);
    expect(lines).toHaveLength(20);
    expect(lines[0]).toContain("[update_rejected] p3: offline");
    expect(lines[1]).toContain("[round_started] round 3/5");
    expect(lines[19]).toContain("stored 6");

    // the stream brings an event the history had, then a new one, and another run's event
    events.ingest(stored[2]);
    events.ingest(ev(26, "log", "live one"));
    events.ingest(ev(27, "log", "elsewhere", { runId: "r2" }));
    await flushPromises();
    lines = logLines(w);
    expect(lines).toHaveLength(21);
    expect(lines[0]).toContain("[log] live one");
    expect(lines.filter((l) => l.includes("stored 23"))).toHaveLength(1);

    const older = w.findAll("button").find((b) => b.text() === "Load older")!;
    await older.trigger("click");
    await flushPromises();
    expect(asked[1]).toMatchObject({ runId: "r1", beforeSeq: 6n, limit: 300 });
    lines = logLines(w);
    expect(lines).toHaveLength(26);
    expect(lines.at(-1)).toContain("stored 1");
    expect(w.findAll("button").some((b) => b.text() === "Load older")).toBe(false);
  });

  it("keeps the page when the history cannot be loaded, and says so", async () => {
    serve({ failEvents: true });
    const w = await mountRun();
    expect(w.findAll(".chart-stub")).toHaveLength(2);
    const alert = w.findAll("[role=alert]").map((a) => a.text());
    expect(alert.some((t) => t.includes("Earlier events could not be loaded") && t.includes("the database is busy"))).toBe(true);
    expect(w.text()).toContain("No events for this run yet.");
    events.ingest(ev(30, "log", "live only"));
    await flushPromises();
    expect(logLines(w)).toEqual([expect.stringContaining("live only")]);
  });
});
