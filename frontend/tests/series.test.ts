import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { RoundInfoSchema } from "../src/gen/fedmetamal/v1/control_pb";
import { METRIC_GROUPS, buildSeries, finalMetrics, groupSeries, metricKeys, roundsToRows, upsertRound, clientSeries, latestClientValue } from "../src/lib/series";

const rounds = [
  create(RoundInfoSchema, { round: 2, metrics: { loss: 0.5, train_loss: 0.6, roc_auc: 0.9 } }),
  create(RoundInfoSchema, { round: 1, metrics: { loss: 0.7, train_loss: 0.8, roc_auc: 0.8, epsilon: 1.5 } }),
  create(RoundInfoSchema, { round: 3, metrics: { loss: Number.NaN, train_loss: 0.4 } }),
];

describe("chart data from RoundInfo", () => {
  it("sorts rounds and drops non-finite values", () => {
    const rows = roundsToRows(rounds);
    expect(rows.map((r) => r.round)).toEqual([1, 2, 3]);
    expect(rows[2].metrics).toEqual({ train_loss: 0.4 });
    expect(metricKeys(rows)).toEqual(["epsilon", "loss", "roc_auc", "train_loss"]);
  });

  it("builds one series per metric with points only where present", () => {
    const rows = roundsToRows(rounds);
    const [loss, eps] = buildSeries(rows, ["loss", "epsilon"]);
    expect(loss.points).toEqual([{ x: 1, y: 0.7 }, { x: 2, y: 0.5 }]);
    expect(eps.points).toEqual([{ x: 1, y: 1.5 }]);
  });

  it("groups loss variants into one chart and leaves out empty groups", () => {
    const rows = roundsToRows(rounds);
    const lossGroup = METRIC_GROUPS.find((g) => g.id === "loss")!;
    expect(groupSeries(rows, lossGroup.match).map((s) => s.key)).toEqual(["loss", "train_loss"]);
    const tpr = METRIC_GROUPS.find((g) => g.id === "tpr_at_1pct_fpr")!;
    expect(groupSeries(rows, tpr.match)).toEqual([]);
  });

  it("appends live rounds and ignores a replayed one", () => {
    const rows = roundsToRows(rounds);
    upsertRound(rows, 4, { loss: 0.3 });
    upsertRound(rows, 4, { loss: 0.3 });
    upsertRound(rows, 2, { accuracy: 0.95 });
    expect(rows.map((r) => r.round)).toEqual([1, 2, 3, 4]);
    expect(rows[1].metrics).toEqual({ loss: 0.5, train_loss: 0.6, roc_auc: 0.9, accuracy: 0.95 });
    expect(finalMetrics(rows)).toMatchObject({ loss: 0.3, roc_auc: 0.9, train_loss: 0.4, epsilon: 1.5 });
  });
});

describe("per-participant series", () => {
  const rounds: { round: number; clientMetrics: Record<string, { values: Record<string, number> }> }[] = [
    { round: 2, clientMetrics: { b: { values: { train_loss: 0.4 } }, a: { values: { train_loss: 0.3, test_roc_auc: 0.9 } } } },
    { round: 1, clientMetrics: { a: { values: { train_loss: 0.5 } }, b: { values: { train_loss: Number.NaN } } } },
  ];

  it("gives one series per participant, by round, skipping missing and non-finite values", () => {
    expect(clientSeries(rounds, "train_loss")).toEqual([
      { key: "a", points: [{ x: 1, y: 0.5 }, { x: 2, y: 0.3 }] },
      { key: "b", points: [{ x: 2, y: 0.4 }] },
    ]);
    expect(clientSeries(rounds, "test_roc_auc")).toEqual([{ key: "a", points: [{ x: 2, y: 0.9 }] }]);
  });

  it("finds a participant's latest value", () => {
    expect(latestClientValue(rounds, "a", "train_loss")).toBe(0.3);
    expect(latestClientValue(rounds, "b", "test_roc_auc")).toBeUndefined();
  });
});
