import { beforeEach, describe, expect, it, vi } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { flushPromises, type VueWrapper } from "@vue/test-utils";
import { ControlService, ModelVersionSchema } from "../src/gen/fedmetamal/v1/control_pb";
import {
  DashboardService,
  DetectService,
  ExtractFeaturesReplySchema,
  ModelReportSchema,
  type ExtractFeaturesRequest,
  type ModelReportRequest,
} from "../src/gen/fedmetamal/v1/dashboard_pb";
import { loadModel, score, type LoadedModel } from "../src/lib/infer";
import DetectView from "../src/views/DetectView.vue";
import { loginAs, mountPage, serve, stats, texts } from "./helpers";

// onnxruntime-web needs WebAssembly and a real model: the page's use of it is what is tested.
vi.mock("../src/lib/infer", () => ({ loadModel: vi.fn(), score: vi.fn() }));

const MZ = new Uint8Array([0x4d, 0x5a, 0x90, 0x00, 0x03]);
const TEXT = new TextEncoder().encode("hello, not a program\n");
const LIMIT = "the file is larger than the upload limit of 32 MB (the server's --max-upload-mb)";
const NAMES = ["num_sections", "entropy", "imports", "has_tls"];

function model(overrides: Partial<LoadedModel["meta"]> = {}): LoadedModel {
  return {
    modelId: "m-pe",
    session: {} as LoadedModel["session"],
    meta: { featureNames: NAMES, threshold: 0.5, explain: null, ...overrides },
    inputName: "features",
    hasGradient: true,
    bytes: 3 * 1024,
    loadMs: 12.4,
  };
}

/** A File whose bytes can be read (jsdom's File has no arrayBuffer()). */
function file(bytes: Uint8Array, name: string): File {
  const f = new File([bytes as Uint8Array<ArrayBuffer>], name);
  return Object.assign(f, { arrayBuffer: () => Promise.resolve(bytes.slice().buffer) });
}

async function pick(w: VueWrapper, files: File[]): Promise<void> {
  const input = w.find("#det-files");
  Object.defineProperty(input.element, "files", { value: files, configurable: true });
  await input.trigger("change");
  await flushPromises();
}

interface Calls {
  extract: ExtractFeaturesRequest[];
  reports: ModelReportRequest[];
}

function server(calls: Calls, opts: { withFeatures?: boolean; reportFailures?: number } = {}) {
  let failures = opts.reportFailures ?? 0;
  serve(({ service }) => {
    service(ControlService, {
      listModels: () => ({
        models: [
          create(ModelVersionSchema, { modelId: "m-synth", round: 9, createdUnix: 300, featureSchema: "" }),
          ...(opts.withFeatures === false ? [] : [create(ModelVersionSchema, { modelId: "m-pe", round: 4, createdUnix: 200, featureSchema: "pe-headers-v2" })]),
        ],
      }),
    });
    service(DetectService, {
      extractFeatures: (req) => {
        calls.extract.push(req);
        if (req.content.length > 8) {
          if (req.filename.endsWith(".iso")) throw new ConnectError(LIMIT, Code.ResourceExhausted);
          return create(ExtractFeaturesReplySchema, {
            sha256: "ab".repeat(32),
            size: BigInt(req.content.length),
            fileType: "not a PE file",
            isPe: false,
            featureSchema: "pe-headers-v2",
            error: "not a PE file: no MZ header",
          });
        }
        return create(ExtractFeaturesReplySchema, {
          sha256: "cd".repeat(32),
          size: BigInt(req.content.length),
          fileType: "PE32+ executable (x86-64)",
          isPe: true,
          featureSchema: "pe-headers-v2",
          features: [5, 7.5, 120, 0],
          warnings: ["overlay data after the last section"],
        });
      },
    });
    service(DashboardService, {
      getModelReport: (req) => {
        calls.reports.push(req);
        if (failures-- > 0) throw new ConnectError("database is locked", Code.Unavailable);
        return create(ModelReportSchema, { modelId: req.modelId, threshold: 0.25 });
      },
    });
  });
}

function result(w: VueWrapper, name: string) {
  return w.find(`article[aria-label="Result for ${name}"]`);
}

describe("Detect page", () => {
  let calls: Calls;
  beforeEach(() => {
    loginAs("viewer");
    calls = { extract: [], reports: [] };
    vi.mocked(loadModel).mockReset();
    vi.mocked(score).mockReset();
    vi.mocked(loadModel).mockResolvedValue(model());
    vi.mocked(score).mockResolvedValue({ probability: 0.93, gradient: Float32Array.from([0.1, 0.4, -0.01, 2]), ms: 0.42 });
  });

  it("offers only models trained on file features", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(DetectView, "/detect");
    const options = w.findAll("#det-model option");
    expect(texts(w, "#det-model option")).toEqual(["m-synth (round 9) — no file features", "m-pe (round 4)"]);
    expect(options[0].attributes("disabled")).toBeDefined();
    expect((w.find("#det-model").element as HTMLSelectElement).value).toBe("m-pe");
    expect(w.find('label[for="det-files"]').text()).toBe("Choose files…");
  });

  it("extracts a file's features on the server and scores them in the browser", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(DetectView, "/detect");
    await pick(w, [file(MZ, "setup.exe")]);

    expect(calls.extract).toHaveLength(1);
    expect(calls.extract[0]).toMatchObject({ filename: "setup.exe", modelId: "m-pe" });
    expect([...calls.extract[0].content]).toEqual([...MZ]);
    expect(loadModel).toHaveBeenCalledWith("m-pe");
    expect(vi.mocked(score).mock.calls[0][1]).toEqual([5, 7.5, 120, 0]);

    const r = result(w, "setup.exe");
    expect(r.find(".verdict").text()).toBe("MALWARE");
    expect(stats(r)).toEqual({ "malware score": "93.00 %", threshold: "50.00 %", "in-browser inference": "0.42 ms" });
    expect(r.text()).toContain("PE32+ executable (x86-64) · SHA-256 " + "cd".repeat(32) + " · 5 bytes");
    expect(texts(r, "ul.help li")).toEqual(["overlay data after the last section"]);
    // ranked by |value x gradient|: has_tls 0, imports -1.2, entropy 3, num_sections 0.5
    expect(texts(r, "tbody td:first-child")).toEqual(["entropy", "imports", "num_sections", "has_tls"]);
    expect(texts(r, "tbody td:last-child")).toEqual(["→ malware", "→ benign", "→ malware", "→ benign"]);
    expect(r.find("h3").text()).toContain("value × gradient of the logit");
    expect(w.find('[aria-live="polite"]').text()).toBe("1 scanned · 1 malware · 0 failed");
    expect(w.text()).toContain("Model m-pe loaded in 12 ms (3.0 KiB ONNX, with gradients).");
  });

  it("calls a file benign below the threshold", async () => {
    server(calls);
    vi.mocked(score).mockResolvedValue({ probability: 0.2, gradient: null, ms: 0.3 });
    const { wrapper: w } = await mountPage(DetectView, "/detect");
    await pick(w, [file(MZ, "notepad.exe")]);
    expect(result(w, "notepad.exe").find(".verdict").text()).toBe("benign");
    expect(w.find('[aria-live="polite"]').text()).toBe("1 scanned · 0 malware · 0 failed");
  });

  it("says a file is not a PE file and does not score it", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(DetectView, "/detect");
    await pick(w, [file(TEXT, "notes.txt")]);
    const r = result(w, "notes.txt");
    expect(r.find(".pill").text()).toBe("failed");
    expect(r.find('[role="alert"]').text()).toBe("not a PE file: no MZ header");
    expect(r.find(".help").text()).toContain("not a PE file · SHA-256");
    expect(loadModel).not.toHaveBeenCalled();
    expect(w.find('[aria-live="polite"]').text()).toBe("0 scanned · 0 malware · 1 failed");
  });

  it("shows the server's upload limit for a file that is too large", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(DetectView, "/detect");
    await pick(w, [file(TEXT, "disk.iso")]);
    const r = result(w, "disk.iso");
    expect(r.find('[role="alert"]').text()).toBe(LIMIT);
    expect(r.find(".pill").text()).toBe("failed");
  });

  it("scans several dropped files, newest on top, asking for the stored threshold once", async () => {
    server(calls);
    vi.mocked(loadModel).mockResolvedValue(model({ threshold: null }));
    const { wrapper: w } = await mountPage(DetectView, "/detect");
    const zone = w.find(".dropzone");
    await zone.trigger("dragover");
    expect(zone.classes()).toContain("over");
    await zone.trigger("drop", { dataTransfer: { files: [file(MZ, "a.exe"), file(MZ, "b.dll"), file(TEXT, "c.txt")] } });
    await flushPromises();
    expect(zone.classes()).not.toContain("over");
    expect(texts(w, "article h2")).toEqual(["c.txt", "b.dll", "a.exe"]);
    expect(calls.extract.map((r) => r.filename).sort()).toEqual(["a.exe", "b.dll", "c.txt"]);
    expect(calls.reports).toEqual([expect.objectContaining({ modelId: "m-pe", targetFpr: 0 })]);
    expect(stats(result(w, "a.exe")).threshold).toBe("25.00 %");
    expect(w.find('[aria-live="polite"]').text()).toBe("2 scanned · 2 malware · 1 failed");
  });

  it("asks for the stored threshold again after that call failed", async () => {
    server(calls, { reportFailures: 1 });
    vi.mocked(loadModel).mockResolvedValue(model({ threshold: null }));
    const { wrapper: w } = await mountPage(DetectView, "/detect");
    await pick(w, [file(MZ, "a.exe")]);
    expect(result(w, "a.exe").find('[role="alert"]').text()).toBe("The server is unavailable: database is locked");
    await pick(w, [file(MZ, "b.exe")]);
    expect(calls.reports).toHaveLength(2);
    expect(result(w, "b.exe").find(".verdict").text()).toBe("MALWARE");
  });

  it("reports a model that takes other features than the server extracted", async () => {
    server(calls);
    vi.mocked(loadModel).mockResolvedValue(model({ featureNames: ["a", "b"] }));
    const { wrapper: w } = await mountPage(DetectView, "/detect");
    await pick(w, [file(MZ, "x.exe")]);
    expect(result(w, "x.exe").find('[role="alert"]').text()).toBe("The server extracted 4 features, the model takes 2.");
    expect(score).not.toHaveBeenCalled();
  });

  it("says when the model cannot run in the browser", async () => {
    server(calls);
    vi.mocked(loadModel).mockRejectedValue(new Error("no available backend found"));
    const { wrapper: w } = await mountPage(DetectView, "/detect");
    await pick(w, [file(MZ, "x.exe")]);
    expect(w.find(".banner.bad").text()).toBe("Could not load the model in the browser: no available backend found");
    expect(result(w, "x.exe").find(".pill").text()).toBe("failed");
  });

  it("explains which models can scan files when none can", async () => {
    server(calls, { withFeatures: false });
    const { wrapper: w } = await mountPage(DetectView, "/detect");
    expect(w.find(".empty").text()).toContain("No model here was trained on features extracted from files");
    expect(w.find(".dropzone").exists()).toBe(false);
  });
});
