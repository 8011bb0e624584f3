import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { flushPromises } from "@vue/test-utils";
import {
  ControlService,
  EventSchema,
  ModelVersionSchema,
  ParticipantSchema,
  RunSchema,
  ServerInfoSchema,
} from "../src/gen/fedmetamal/v1/control_pb";
import { events } from "../src/stores/session";
import OverviewView from "../src/views/OverviewView.vue";
import { button, loginAs, mountPage, serve, stats, texts } from "./helpers";

const now = Date.now() / 1000;

function fullServer(calls: { listRuns: number }) {
  serve(({ service }) => {
    service(ControlService, {
      getServerInfo: () => create(ServerInfoSchema, { version: "1.4.0", protocolVersion: 3, address: "0.0.0.0:50051", tls: true, participantsOnline: 2, runsActive: 1, database: "sqlite" }),
      listRuns: () => {
        calls.listRuns += 1;
        return {
          runs: [
            create(RunSchema, { runId: "r-old", name: "baseline", state: "completed", round: 10, rounds: 10, createdUnix: now - 9000, updatedUnix: now - 120 }),
            create(RunSchema, { runId: "r-live", name: "fedprox", state: "running", round: 3, rounds: 12, createdUnix: now - 600, mode: "simulated", latestMetrics: { roc_auc: 0.91234 } }),
            create(RunSchema, { runId: "r-bad", name: "", state: "failed", round: 1, rounds: 5, createdUnix: now - 5000, error: "out of memory" }),
          ],
        };
      },
      listParticipants: () => ({
        participants: [
          create(ParticipantSchema, { participantId: "p-1", name: "lab-a", state: "approved", online: true, activity: "training", lastSeenUnix: now - 5 }),
          create(ParticipantSchema, { participantId: "p-2", name: "", state: "approved", online: true, activity: "", lastSeenUnix: now - 3 }),
          create(ParticipantSchema, { participantId: "p-3", name: "lab-c", state: "pending", online: false }),
        ],
      }),
      listModels: () => ({
        models: [create(ModelVersionSchema, { modelId: "m-3", runId: "r-live", round: 3, createdUnix: now - 30, metrics: { test_roc_auc: 0.9 } })],
      }),
    });
  });
}

describe("Overview page", () => {
  beforeEach(() => loginAs("admin"));
  afterEach(() => vi.useRealTimers());

  it("shows active runs with their progress, and who is online", async () => {
    fullServer({ listRuns: 0 });
    const { wrapper: w } = await mountPage(OverviewView);

    expect(stats(w)).toMatchObject({
      "active runs": "1",
      "participants online": "2",
      "enrolled participants": "3",
      "server (protocol 3)": "v1.4.0",
    });
    expect(w.find('[aria-label="Server status"]').text()).toContain("0.0.0.0:50051");
    expect(w.find('[aria-label="Server status"]').text()).toContain("TLS · sqlite");

    const cards = w.findAll(".card");
    const active = cards.find((c) => c.find("h2").text() === "Active runs")!;
    const rows = active.findAll("tbody tr");
    expect(rows).toHaveLength(1);
    expect(rows[0].find("a").text()).toBe("fedprox");
    expect(rows[0].find("a").attributes("href")).toBe("/runs/r-live");
    expect(rows[0].text()).toContain("simulated");
    expect(rows[0].find(".pill").text()).toBe("running");
    const bar = rows[0].find('[role="progressbar"]');
    expect(bar.attributes("aria-valuenow")).toBe("3");
    expect(bar.attributes("aria-valuemax")).toBe("12");
    expect(bar.attributes("aria-label")).toBe("Round 3 of 12");
    expect(bar.find("span").attributes("style")).toContain("width: 25%");
    expect(rows[0].text()).toContain("3 / 12 rounds");
    expect(rows[0].find("td.num").text()).toBe("0.9123");

    const online = cards.find((c) => c.find("h2").text() === "Participants online")!;
    expect(texts(online, "li strong")).toEqual(["lab-a", "p-2"]);
    expect(texts(online, "li .pill")).toEqual(["training", "idle"]);

    // Finished and failed runs are "recent", newest first; the failure reason is the pill's title.
    const recent = cards.find((c) => c.find("h2").text() === "Recent runs")!;
    expect(texts(recent, "tbody tr td:first-child")).toEqual(["r-bad", "baseline"]);
    expect(recent.find("tbody tr .pill").attributes("title")).toBe("out of memory");

    const models = cards.find((c) => c.find("h2").text() === "Latest models")!;
    expect(models.find("tbody a").text()).toBe("fedprox · round 3");
    expect(models.find("tbody a").attributes("href")).toBe("/models?id=m-3");

    // A pending participant is pointed out to an admin.
    expect(w.find(".banner.warn").text()).toContain("1 participant(s) wait for approval");
    expect(w.find('a[href="/runs/new"]').exists()).toBe(true);
  });

  it("says so when nothing is running, nobody is online and no model exists", async () => {
    serve(({ service }) => {
      service(ControlService, {
        getServerInfo: () => create(ServerInfoSchema, { version: "1.4.0" }),
        listRuns: () => ({}),
        listParticipants: () => ({}),
        listModels: () => ({}),
      });
    });
    const { wrapper: w } = await mountPage(OverviewView);
    expect(texts(w, ".empty")).toEqual([
      "No run is active. Start one",
      "Nobody is online. Invite a participant",
      "No model yet: each finished round saves one.",
      "No finished runs yet.",
    ]);
    expect(w.find("table").exists()).toBe(false);
    expect(w.find(".banner").exists()).toBe(false);
  });

  it("hides admin links from a viewer", async () => {
    loginAs("viewer");
    fullServer({ listRuns: 0 });
    const { wrapper: w } = await mountPage(OverviewView);
    expect(w.find('a[href="/runs/new"]').exists()).toBe(false);
    expect(w.find(".banner.warn").exists()).toBe(false);
  });

  it("shows the server's error and loads again on Retry", async () => {
    let up = false;
    serve(({ service }) => {
      service(ControlService, {
        getServerInfo: () => {
          if (!up) throw new ConnectError("database is locked", Code.Unavailable);
          return create(ServerInfoSchema, { version: "1.4.0", runsActive: 0 });
        },
        listRuns: () => ({}),
        listParticipants: () => ({}),
        listModels: () => ({}),
      });
    });
    const { wrapper: w } = await mountPage(OverviewView);
    const alert = w.find('[role="alert"]');
    expect(alert.text()).toContain("The server is unavailable: database is locked");
    // No "nothing here" claims while nothing could be loaded.
    expect(w.findAll(".empty")).toHaveLength(0);

    up = true;
    await button(w, "Retry")!.trigger("click");
    await flushPromises();
    expect(w.find('[role="alert"]').exists()).toBe(false);
    expect(stats(w)["server (protocol 0)"]).toBe("v1.4.0");
  });

  it("reloads once for a burst of run events", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const calls = { listRuns: 0 };
    fullServer(calls);
    await mountPage(OverviewView);
    expect(calls.listRuns).toBe(1);
    for (let seq = 1n; seq <= 5n; seq++) events.ingest(create(EventSchema, { seq, kind: "round_finished", runId: "r-live" }));
    events.ingest(create(EventSchema, { seq: 6n, kind: "log", runId: "r-live" }));
    await vi.advanceTimersByTimeAsync(1100);
    await flushPromises();
    expect(calls.listRuns).toBe(2);
  });
});
