import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { flushPromises, type VueWrapper } from "@vue/test-utils";
import { ControlService, EventSchema, RoundInfoSchema, RunSchema } from "../src/gen/fedmetamal/v1/control_pb";
import { events } from "../src/stores/session";
import CompareView from "../src/views/CompareView.vue";
import { FakeChart } from "./fakechart";
import { button, loginAs, mountPage, serve, texts } from "./helpers";

vi.mock("../src/lib/chartsetup", async (importOriginal) => (await import("./fakechart")).chartsetupMock(importOriginal));

const ROUNDS: Record<string, Record<string, number>[]> = {
  "r-a": [
    { roc_auc: 0.8, loss: 0.5 },
    { roc_auc: 0.85, loss: 0.4 },
    { roc_auc: 0.9, loss: 0.3, accuracy: 0.88 },
  ],
  "r-b": [
    { roc_auc: 0.7, loss: 0.6 },
    { roc_auc: 0.75, loss: 0.55 },
  ],
};

function server(listed: string[]) {
  serve(({ service }) => {
    service(ControlService, {
      listRuns: () => ({
        runs: [
          create(RunSchema, { runId: "r-a", name: "fedavg", state: "completed", round: 3, rounds: 3, createdUnix: 100 }),
          create(RunSchema, { runId: "r-b", name: 'prox, "mu" 0.1', state: "running", round: 2, rounds: 10, createdUnix: 200 }),
          create(RunSchema, { runId: "r-c", name: "", state: "failed", createdUnix: 300 }),
        ],
      }),
      listRounds: (req) => {
        listed.push(req.runId);
        if (req.runId === "r-c") throw new ConnectError("run r-c has no rounds table", Code.NotFound);
        return { rounds: (ROUNDS[req.runId] ?? []).map((metrics, i) => create(RoundInfoSchema, { round: i + 1, metrics })) };
      },
    });
  });
}

/** What the page saved through an <a download> click, read back as text. */
function captureDownloads(): { name: string; text: () => Promise<string>; href: string }[] {
  const saved: { name: string; text: () => Promise<string>; href: string }[] = [];
  const blobs = new Map<string, Blob>();
  URL.createObjectURL = (b: Blob) => {
    const url = `blob:${blobs.size + 1}`;
    blobs.set(url, b);
    return url;
  };
  URL.revokeObjectURL = () => {};
  vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
    const blob = blobs.get(this.href);
    saved.push({
      name: this.download,
      href: this.href,
      text: () =>
        new Promise((resolve) => {
          const r = new FileReader();
          r.onload = () => resolve(r.result as string);
          r.readAsText(blob!);
        }),
    });
  });
  return saved;
}

async function pick(w: VueWrapper, id: string, on = true): Promise<void> {
  await w.find(`#cmp-${id}`).setValue(on);
  await flushPromises();
}

describe("Compare page", () => {
  let listed: string[];
  beforeEach(() => {
    loginAs("viewer");
    listed = [];
    FakeChart.instances = [];
  });
  afterEach(() => vi.restoreAllMocks());

  it("lists runs to pick and asks for two or more", async () => {
    server(listed);
    const { wrapper: w } = await mountPage(CompareView, "/compare");
    expect(texts(w, ".picker label")).toEqual([
      expect.stringMatching(/^r-c failed.+ · 0\/0$/),
      expect.stringMatching(/^prox, "mu" 0\.1 running.+ · 2\/10$/),
      expect.stringMatching(/^fedavg completed.+ · 3\/3$/),
    ]);
    expect(w.find(".main .empty").text()).toBe("Pick two or more runs on the left to overlay their curves.");
    expect(button(w, "Export table (CSV)")!.attributes("disabled")).toBeDefined();
    expect(FakeChart.instances).toHaveLength(0);
  });

  it("overlays the picked runs' curves for one metric and tabulates final metrics", async () => {
    server(listed);
    const { wrapper: w, router } = await mountPage(CompareView, "/compare");
    await pick(w, "r-a");
    await pick(w, "r-b");
    expect(listed).toEqual(["r-a", "r-b"]);
    expect(router.currentRoute.value.query).toEqual({ runs: "r-a,r-b", metric: "roc_auc" });

    // ROC AUC is chosen first when the runs have it
    expect((w.find("#cmp-metric").element as HTMLSelectElement).value).toBe("roc_auc");
    expect(texts(w, "#cmp-metric option")).toEqual(["Accuracy", "Loss", "ROC AUC"]);
    const chart = FakeChart.live().at(-1)!;
    expect(chart.data.datasets.map((d) => [d.label, d.data])).toEqual([
      ["fedavg", [{ x: 1, y: 0.8 }, { x: 2, y: 0.85 }, { x: 3, y: 0.9 }]],
      ['prox, "mu" 0.1', [{ x: 1, y: 0.7 }, { x: 2, y: 0.75 }]],
    ]);
    expect(chart.canvas.getAttribute("aria-label")).toBe("ROC AUC per round for the chosen runs");

    expect(texts(w, ".main table thead th")).toEqual(["Run", "Rounds", "ROC AUC", "Accuracy", "Loss"]);
    expect(texts(w, ".main table tbody tr").length).toBe(2);
    expect(texts(w, ".main table tbody tr:first-child td")).toEqual(["fedavg", "3", "0.9000", "0.8800", "0.3000"]);
    expect(texts(w, ".main table tbody tr:last-child td")).toEqual(['prox, "mu" 0.1', "2", "0.7500", "—", "0.5500"]);

    await w.find("#cmp-metric").setValue("loss");
    await flushPromises();
    expect(FakeChart.live().at(-1)!.data.datasets.map((d) => d.data)).toEqual([
      [{ x: 1, y: 0.5 }, { x: 2, y: 0.4 }, { x: 3, y: 0.3 }],
      [{ x: 1, y: 0.6 }, { x: 2, y: 0.55 }],
    ]);
    expect(router.currentRoute.value.query.metric).toBe("loss");

    // unpicking drops the run's curve and row; its rounds are not fetched again on re-pick
    await pick(w, "r-a", false);
    expect(FakeChart.live().at(-1)!.data.datasets.map((d) => d.label)).toEqual(['prox, "mu" 0.1']);
    expect(texts(w, ".main table tbody tr")).toHaveLength(1);
    await pick(w, "r-a");
    expect(listed).toEqual(["r-a", "r-b"]);
  });

  it("opens with the runs and metric named in the address", async () => {
    server(listed);
    const { wrapper: w } = await mountPage(CompareView, "/compare?runs=r-b,r-a&metric=loss", "/compare");
    expect(listed).toEqual(["r-b", "r-a"]);
    expect((w.find("#cmp-metric").element as HTMLSelectElement).value).toBe("loss");
    expect((w.find("#cmp-r-a").element as HTMLInputElement).checked).toBe(true);
    expect(FakeChart.live().at(-1)!.data.datasets.map((d) => d.label)).toEqual(['prox, "mu" 0.1', "fedavg"]);
  });

  it("exports the curves and the final metrics as CSV, and the chart as PNG", async () => {
    server(listed);
    const saved = captureDownloads();
    const { wrapper: w } = await mountPage(CompareView, "/compare?runs=r-a,r-b", "/compare");
    await button(w, "Export curves (CSV)")!.trigger("click");
    await button(w, "Export table (CSV)")!.trigger("click");
    await button(w, "Export chart (PNG)")!.trigger("click");
    expect(saved.map((s) => s.name)).toEqual(["compare-roc_auc.csv", "compare-final-metrics.csv", "compare-roc_auc.png"]);
    expect(await saved[0].text()).toBe('round,fedavg,"prox, ""mu"" 0.1"\r\n1,0.8,0.7\r\n2,0.85,0.75\r\n3,0.9,\r\n');
    expect(await saved[1].text()).toBe(
      "run_id,name,state,rounds,roc_auc,accuracy,loss\r\n" +
        "r-a,fedavg,completed,3,0.9,0.88,0.3\r\n" +
        'r-b,"prox, ""mu"" 0.1",running,2,0.75,,0.55\r\n',
    );
    expect(saved[2].href).toBe("data:image/png;base64,iVBORw0KGgo=");
  });

  it("adds a live round to the picked run's curve without redrawing the chart", async () => {
    server(listed);
    const { wrapper: w } = await mountPage(CompareView, "/compare?runs=r-a,r-b", "/compare");
    const chart = FakeChart.live().at(-1)!;
    events.ingest(create(EventSchema, { seq: 10n, kind: "round_finished", runId: "r-b", round: 3, metrics: { roc_auc: 0.8, loss: 0.5 } }));
    events.ingest(create(EventSchema, { seq: 11n, kind: "round_finished", runId: "r-c", round: 1, metrics: { roc_auc: 0.1 } }));
    await flushPromises();
    expect(FakeChart.live()).toEqual([chart]);
    expect(chart.data.datasets[1].data).toEqual([{ x: 1, y: 0.7 }, { x: 2, y: 0.75 }, { x: 3, y: 0.8 }]);
    expect(chart.updates.at(-1)).toBe("none");
    expect(texts(w, ".main table tbody tr:last-child td")[1]).toBe("3");
    expect(listed).toEqual(["r-a", "r-b"]);
  });

  it("names the run whose rounds could not be loaded", async () => {
    server(listed);
    const { wrapper: w } = await mountPage(CompareView, "/compare");
    await pick(w, "r-c");
    expect(w.find('[role="alert"]').text()).toBe("r-c: run r-c has no rounds table");
    // the other runs still compare; the failed one is tried again with the next pick
    await pick(w, "r-a");
    expect(texts(w, ".main table tbody tr td:first-child")).toEqual(["fedavg"]);
    expect(listed).toEqual(["r-c", "r-c", "r-a"]);
  });
});
