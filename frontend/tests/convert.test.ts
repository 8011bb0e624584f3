import { describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { DatasetSummarySchema } from "../src/gen/fedmetamal/v1/common_pb";
import { ServerInfoSchema } from "../src/gen/fedmetamal/v1/control_pb";
import { num, numRecord } from "../src/api/convert";

describe("uint64 conversion", () => {
  it("turns bigint fields from the wire into numbers", () => {
    const info = fromBinary(ServerInfoSchema, toBinary(ServerInfoSchema, create(ServerInfoSchema, { lastEventSeq: 123456789012n })));
    expect(typeof info.lastEventSeq).toBe("bigint");
    expect(num(info.lastEventSeq)).toBe(123456789012);
    expect(num(7)).toBe(7);
    expect(num(undefined)).toBe(0);
  });

  it("converts uint64 maps (label and family counts)", () => {
    const s = create(DatasetSummarySchema, { labelCounts: { benign: 30n, malware: 70n } });
    const counts = numRecord(s.labelCounts);
    expect(counts).toEqual({ benign: 30, malware: 70 });
    expect(counts.malware / (counts.benign + counts.malware)).toBeCloseTo(0.7);
    expect(numRecord(undefined)).toEqual({});
  });
});
