import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { FileChunkSchema } from "../src/gen/fedmetamal/v1/control_pb";
import { collectFile } from "../src/lib/export";
import { parseHeterogeneity } from "../src/lib/hetero";
import { metricLabel, orderMetrics } from "../src/lib/format";

async function* chunks(data: Uint8Array[], total: number, sha: Uint8Array) {
  yield create(FileChunkSchema, { part: { case: "header", value: { filename: "m.onnx", mediaType: "application/onnx", totalBytes: BigInt(total), sha256: sha } } });
  for (const d of data) yield create(FileChunkSchema, { part: { case: "data", value: d } });
}

describe("ExportModel download", () => {
  it("joins the chunks and checks size and SHA-256", async () => {
    const parts = [new Uint8Array([1, 2, 3]), new Uint8Array([4, 5])];
    const sha = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array([1, 2, 3, 4, 5])));
    const file = await collectFile(chunks(parts, 5, sha));
    expect(file.filename).toBe("m.onnx");
    expect([...file.bytes]).toEqual([1, 2, 3, 4, 5]);
    await expect(collectFile(chunks(parts, 6, sha))).rejects.toThrow(/cut short/);
    await expect(collectFile(chunks(parts, 5, new Uint8Array(32)))).rejects.toThrow(/SHA-256/);
  });
});

describe("heterogeneity report", () => {
  it("gives per-client composition and the index", () => {
    const h = parseHeterogeneity(
      JSON.stringify({
        federation: { index: 0.22 },
        components: { label: 0.07, family: null },
        clients: [{ client: 0, size: 100, malware_share: 0.55 }, { client: 1, size: 40, malware_share: 0.25 }],
        participants: ["p-a", "p-b"],
      }),
    )!;
    expect(h.index).toBe(0.22);
    expect(h.clients.map((c) => [c.label, c.benign, c.malware])).toEqual([["p-a", 45, 55], ["p-b", 30, 10]]);
    expect(parseHeterogeneity("")).toBeNull();
    expect(parseHeterogeneity("{not json")).toBeNull();
  });
});

describe("metric labels", () => {
  it("names prefixed metrics", () => {
    expect(metricLabel("test_roc_auc")).toBe("ROC AUC (test)");
    expect(metricLabel("tpr_at_1pct_fpr")).toBe("TPR at 1% FPR");
    expect(metricLabel("custom")).toBe("Custom");
    expect(metricLabel("tpr_at_0.1pct_fpr")).toBe("TPR at 0.1% FPR");
    expect(metricLabel("malware_share")).toBe("Malware share");
    expect(metricLabel("test_precision")).toBe("Precision (test)");
  });
});

describe("orderMetrics", () => {
  it("puts the headline metrics first and the evaluation set's size last", () => {
    const keys = orderMetrics({ n: 4061, zeta: 1, malware_share: 0.7, loss: 0.1, accuracy: 0.97, roc_auc: 0.98, alpha: 2 }).map(([k]) => k);
    expect(keys).toEqual(["roc_auc", "accuracy", "loss", "alpha", "zeta", "malware_share", "n"]);
  });
});
