import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { flushPromises, type VueWrapper } from "@vue/test-utils";
import {
  ControlService,
  FileChunkSchema,
  ModelVersionSchema,
  type ExportModelRequest,
  type FileChunk,
} from "../src/gen/fedmetamal/v1/control_pb";
import {
  ConfusionMatrixSchema,
  DashboardService,
  ModelReportSchema,
  RocPointSchema,
  type ModelReportRequest,
} from "../src/gen/fedmetamal/v1/dashboard_pb";
import ModelView from "../src/views/ModelView.vue";
import { FakeChart } from "./fakechart";
import { button, loginAs, mountPage, serve, stats, texts } from "./helpers";

vi.mock("../src/lib/chartsetup", async (importOriginal) => (await import("./fakechart")).chartsetupMock(importOriginal));

const MODELS = [
  create(ModelVersionSchema, { modelId: "m-r1-1", runId: "r-1", round: 1, createdUnix: 100, metrics: { roc_auc: 0.8 } }),
  create(ModelVersionSchema, { modelId: "m-r1-2", runId: "r-1", round: 2, createdUnix: 200, metrics: { roc_auc: 0.9, accuracy: 0.85 } }),
  create(ModelVersionSchema, { modelId: "m-r2-5", runId: "r-2", round: 5, createdUnix: 50, metrics: { test_roc_auc: 0.7 } }),
];
const ROC = [
  { fpr: 0, tpr: 0, threshold: 1 },
  { fpr: 0.01, tpr: 0.6, threshold: 0.8 },
  { fpr: 0.05, tpr: 0.85, threshold: 0.6 },
  { fpr: 1, tpr: 1, threshold: 0 },
];
const FILE = new Uint8Array([0x08, 0x07, 0x12, 0x04, 0x6f, 0x6e, 0x6e, 0x78]);

interface Calls {
  reports: ModelReportRequest[];
  exports: ExportModelRequest[];
  histories: string[];
}

async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}

function server(calls: Calls, opts: { models?: typeof MODELS; noRoc?: boolean; reportFails?: boolean; badDigest?: boolean } = {}) {
  const models = opts.models ?? MODELS;
  serve(({ service }) => {
    service(ControlService, {
      listModels: (req) => {
        if (req.runId) calls.histories.push(req.runId);
        return { models: req.runId ? models.filter((m) => m.runId === req.runId) : models };
      },
      async *exportModel(req): AsyncIterable<FileChunk> {
        calls.exports.push(req);
        const digest = opts.badDigest ? new Uint8Array(32) : await sha256(FILE);
        const ext = req.format === "onnx" ? "onnx" : "safetensors";
        yield create(FileChunkSchema, { part: { case: "header", value: { filename: `${req.modelId}.${ext}`, mediaType: `application/${ext}`, totalBytes: BigInt(FILE.length), sha256: digest } } });
        yield create(FileChunkSchema, { part: { case: "data", value: FILE.slice(0, 3) } });
        yield create(FileChunkSchema, { part: { case: "data", value: FILE.slice(3) } });
      },
    });
    service(DashboardService, {
      getModelReport: (req) => {
        calls.reports.push(req);
        if (opts.reportFails) throw new ConnectError("model m-r1-2 has no stored weights", Code.NotFound);
        const m = models.find((x) => x.modelId === req.modelId)!;
        const strict = req.targetFpr <= 0.01;
        return create(ModelReportSchema, {
          modelId: m.modelId,
          runId: m.runId,
          round: m.round,
          architectureJson: JSON.stringify({ kind: "mlp", hidden: [64, 32], activation: "relu" }),
          numParams: 12345n,
          featureSchema: "pe-headers-v2",
          nFeatures: 96,
          metrics: m.metrics,
          roc: opts.noRoc ? [] : ROC.map((p) => create(RocPointSchema, p)),
          threshold: strict ? 0.8 : 0.6,
          confusion: create(ConfusionMatrixSchema, strict
            ? { truePositives: 600n, falseNegatives: 400n, falsePositives: 10n, trueNegatives: 990n }
            : { truePositives: 850n, falseNegatives: 150n, falsePositives: 50n, trueNegatives: 950n }),
          evaluatedOn: "server test set (2000 files)",
        });
      },
    });
  });
}

/** A Blob's bytes (jsdom's Blob has no arrayBuffer()). */
function readBlob(blob: Blob): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(new Uint8Array(r.result as ArrayBuffer));
    r.onerror = () => reject(r.error);
    r.readAsArrayBuffer(blob);
  });
}

function matrix(w: VueWrapper): string[] {
  return texts(w, 'table[aria-label="Confusion matrix"] tbody td');
}

describe("Model page", () => {
  let calls: Calls;
  beforeEach(() => {
    loginAs("viewer");
    calls = { reports: [], exports: [], histories: [] };
    FakeChart.instances = [];
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it("opens the newest version with its report at 1 % FPR", async () => {
    server(calls);
    const { wrapper: w, router } = await mountPage(ModelView, "/models");
    expect(texts(w, "#model-pick option")).toEqual(["m-r1-2 (round 2)", "m-r1-1 (round 1)", "m-r2-5 (round 5)"]);
    expect((w.find("#model-pick").element as HTMLSelectElement).value).toBe("m-r1-2");
    expect(calls.reports).toHaveLength(1);
    expect(calls.reports[0]).toMatchObject({ modelId: "m-r1-2", targetFpr: 0.01 });
    expect(router.currentRoute.value.query.id).toBe("m-r1-2");

    expect(stats(w)).toMatchObject({
      parameters: (12345).toLocaleString(),
      "input features": "96",
      "round of r-1": "2",
      "feature schema": "pe-headers-v2",
      "threshold (malware probability)": "0.8000",
    });
    expect(matrix(w)).toEqual(["600 TP", "400 FN", "10 FP", "990 TN"]);
    expect(w.text()).toContain("TPR 60.00 % at FPR 1.00 %");
    expect(w.text()).toContain("server test set (2000 files)");
    expect(texts(w, ".kv dt")).toEqual(["kind", "hidden", "activation"]);
    expect(texts(w, ".kv dd")).toEqual(["mlp", "[64,32]", "relu"]);
    expect(texts(w, ".grid .card:nth-child(4) th")).toEqual(["ROC AUC", "Accuracy"]);

    // the run's versions, oldest round first, the shown one marked
    expect(calls.histories).toEqual(["r-1"]);
    expect(texts(w, ".history tbody td:first-child")).toEqual(["1", "2"]);
    expect(w.find('.history button[aria-current="true"]').text()).toBe("m-r1-2");
  });

  it("draws the ROC curve with the chosen threshold marked", async () => {
    server(calls);
    await mountPage(ModelView, "/models");
    const [chart] = FakeChart.live();
    expect(chart.type).toBe("scatter");
    expect(chart.canvas.getAttribute("aria-label")).toBe("ROC curve");
    const sets = chart.data.datasets;
    expect(sets.map((d) => d.label)).toEqual(["ROC", "chance", "threshold"]);
    expect(sets[0].data).toEqual(ROC.map((p) => ({ x: p.fpr, y: p.tpr })));
    expect(sets[2].data).toEqual([{ x: 0.01, y: 0.6 }]);
  });

  it("asks for the report again at another FPR target", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(ModelView, "/models");
    await w.find("#fpr").setValue("4");
    await w.find("#fpr").setValue("5");
    await vi.advanceTimersByTimeAsync(350);
    await flushPromises();
    // debounced: one call for what was typed last
    expect(calls.reports.map((r) => r.targetFpr)).toEqual([0.01, 0.05]);
    expect(stats(w)["threshold (malware probability)"]).toBe("0.6000");
    expect(matrix(w)).toEqual(["850 TP", "150 FN", "50 FP", "950 TN"]);
    expect(FakeChart.live()[0].data.datasets[2].data).toEqual([{ x: 0.05, y: 0.85 }]);
    // the same run: its history is not fetched again
    expect(calls.histories).toEqual(["r-1"]);

    await w.find("#fpr").setValue("0");
    await vi.advanceTimersByTimeAsync(350);
    await flushPromises();
    expect(calls.reports.at(-1)!.targetFpr).toBe(0);
  });

  it("switches version from the picker and from the history", async () => {
    server(calls);
    const { wrapper: w, router } = await mountPage(ModelView, "/models");
    await w.find("#model-pick").setValue("m-r2-5");
    await flushPromises();
    expect(calls.reports.at(-1)!.modelId).toBe("m-r2-5");
    expect(router.currentRoute.value.query.id).toBe("m-r2-5");
    expect(w.find(".history").text()).toContain("m-r2-5");
    expect(calls.histories).toEqual(["r-1", "r-2"]);
    expect(w.findAll("h2").map((h) => h.text())).toContain("Version history of r-2");

    await w.find("#model-pick").setValue("m-r1-2");
    await flushPromises();
    await w.findAll(".history button").find((b) => b.text() === "m-r1-1")!.trigger("click");
    await flushPromises();
    expect(calls.reports.at(-1)!.modelId).toBe("m-r1-1");
    expect((w.find("#model-pick").element as HTMLSelectElement).value).toBe("m-r1-1");
    expect(w.find('.history button[aria-current="true"]').text()).toBe("m-r1-1");
  });

  it("opens the version named in the address", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(ModelView, "/models?id=m-r1-1", "/models");
    expect(calls.reports.map((r) => r.modelId)).toEqual(["m-r1-1"]);
    expect((w.find("#model-pick").element as HTMLSelectElement).value).toBe("m-r1-1");
  });

  it("downloads ONNX and safetensors files, checked against their SHA-256", async () => {
    server(calls);
    const blobs: Blob[] = [];
    const saved: { href: string; download: string }[] = [];
    URL.createObjectURL = vi.fn((b: Blob) => {
      blobs.push(b);
      return `blob:model-${blobs.length}`;
    });
    URL.revokeObjectURL = vi.fn();
    vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      saved.push({ href: this.href, download: this.download });
    });
    const { wrapper: w } = await mountPage(ModelView, "/models");
    // The SHA-256 check is native async work: wait for each file to be saved.
    await button(w, "Download ONNX")!.trigger("click");
    await vi.waitFor(() => expect(saved).toHaveLength(1));
    await flushPromises();
    await button(w, "Download safetensors")!.trigger("click");
    await vi.waitFor(() => expect(saved).toHaveLength(2));
    await flushPromises();

    expect(calls.exports.map((e) => [e.modelId, e.format])).toEqual([["m-r1-2", "onnx"], ["m-r1-2", "safetensors"]]);
    expect(saved).toEqual([
      { href: "blob:model-1", download: "m-r1-2.onnx" },
      { href: "blob:model-2", download: "m-r1-2.safetensors" },
    ]);
    expect(blobs[0].type).toBe("application/onnx");
    expect(await readBlob(blobs[0])).toEqual(FILE);
    expect(w.find('[role="alert"]').exists()).toBe(false);
  });

  it("refuses a download whose SHA-256 does not match", async () => {
    server(calls, { badDigest: true });
    URL.createObjectURL = vi.fn(() => "blob:x");
    const click = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(() => {});
    const { wrapper: w } = await mountPage(ModelView, "/models");
    await button(w, "Download ONNX")!.trigger("click");
    await vi.waitFor(() => expect(w.find('[role="alert"]').text()).toBe("The downloaded model does not match its SHA-256."));
    expect(click).not.toHaveBeenCalled();
  });

  it("says when a version has no evaluation data", async () => {
    server(calls, { noRoc: true });
    const { wrapper: w } = await mountPage(ModelView, "/models");
    expect(w.text()).toContain("No evaluation data is stored with this model version.");
    expect(FakeChart.instances).toHaveLength(0);
  });

  it("shows why the report could not be made, and keeps downloads off", async () => {
    server(calls, { reportFails: true });
    const { wrapper: w } = await mountPage(ModelView, "/models");
    expect(w.find('[role="alert"]').text()).toBe("model m-r1-2 has no stored weights");
    expect(button(w, "Download ONNX")!.attributes("disabled")).toBeDefined();
  });

  it("explains that there is no model yet", async () => {
    server(calls, { models: [] });
    const { wrapper: w } = await mountPage(ModelView, "/models");
    expect(w.find(".empty").text()).toBe("No model yet. Each finished round of a run saves a model version.");
    expect(w.find("#model-pick").attributes("disabled")).toBeDefined();
    expect(calls.reports).toHaveLength(0);
  });
});
