import { describe, expect, it } from "vitest";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { detectorMeta, onnxMetadata } from "../src/lib/onnxmeta";

function model(props: Record<string, string>): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, 0).int64(9); // ir_version
  w.tag(2, 2).string("pytorch"); // producer_name
  w.tag(7, 2).bytes(new Uint8Array(300).fill(0xff)); // graph (skipped by length)
  for (const [k, v] of Object.entries(props)) {
    const e = new BinaryWriter();
    e.tag(1, 2).string(k).tag(2, 2).string(v);
    w.tag(14, 2).bytes(e.finish());
  }
  w.tag(8, 2).bytes(new BinaryWriter().tag(2, 0).int64(17).finish()); // opset_import
  return w.finish();
}

describe("ONNX metadata_props", () => {
  it("reads the detector's metadata without parsing the graph", () => {
    const bytes = model({
      format: "fedmetamal-detector",
      feature_names: JSON.stringify(["size", "entropy"]),
      threshold: JSON.stringify({ value: 0.37, target_fpr: 0.01 }),
      explain: JSON.stringify({ mean: [1, 2], std: [3, 4], log_mask: [true, false] }),
    });
    const props = onnxMetadata(bytes);
    expect(props.format).toBe("fedmetamal-detector");
    const meta = detectorMeta(props);
    expect(meta.featureNames).toEqual(["size", "entropy"]);
    expect(meta.threshold).toBe(0.37);
    expect(meta.explain?.log_mask).toEqual([true, false]);
  });

  it("copes with models without metadata and rejects truncated files", () => {
    expect(detectorMeta(onnxMetadata(model({})))).toEqual({ featureNames: [], threshold: null, explain: null });
    const bytes = model({ feature_names: "[]" });
    expect(() => onnxMetadata(bytes.subarray(0, 40))).toThrow(/truncated/);
  });
});
