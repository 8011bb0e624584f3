import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { EventSchema, RoundInfoSchema } from "../src/gen/fedmetamal/v1/control_pb";
import { mergeNewestFirst, oldestSeq } from "../src/lib/eventlog";
import { CELL_STATES, buildTimeline, cellState, roundInProgress } from "../src/lib/timeline";

const rounds = [
  // out of order on purpose: the grid sorts by round
  create(RoundInfoSchema, { round: 2, sampled: ["p1", "p3"], reported: ["p1"], rejected: { p3: "norm too large" } }),
  create(RoundInfoSchema, { round: 1, sampled: ["p1", "p2", "p3"], reported: ["p1", "p3"], rejected: {} }),
  create(RoundInfoSchema, { round: 3, sampled: ["p2", "client-10", "client-9"], reported: ["client-9", "client-10"], rejected: {} }),
];

describe("participation timeline", () => {
  it("tells the state of one participant in one round, rejection first", () => {
    const r = { round: 1, sampled: ["a", "b", "c"], reported: ["a", "c"], rejected: { c: "late" } };
    expect(["a", "b", "c", "d"].map((id) => cellState(r, id))).toEqual(["reported", "dropped", "rejected", "out"]);
  });

  it("has one row per participant (slots first) and one column per finished round", () => {
    const t = buildTimeline(rounds, ["p2", "p1", "p3"], null, new Map([["p1", "lab-a"]]));
    expect(t.columns.map((c) => [c.round, c.inProgress])).toEqual([
      [1, false],
      [2, false],
      [3, false],
    ]);
    expect(t.columns[1].title).toBe("Round 2: 2 sampled, 1 reported, 1 rejected");
    // members in slot order, then others in natural order (client-9 before client-10)
    expect(t.rows.map((r) => r.id)).toEqual(["p2", "p1", "p3", "client-9", "client-10"]);
    const grid = Object.fromEntries(t.rows.map((r) => [r.id, r.cells.map((c) => c.state)]));
    expect(grid).toEqual({
      p2: ["dropped", "out", "dropped"],
      p1: ["reported", "reported", "out"],
      p3: ["reported", "rejected", "out"],
      "client-9": ["out", "out", "reported"],
      "client-10": ["out", "out", "reported"],
    });
    expect(t.rows[1].counts).toEqual({ reported: 2, rejected: 0, dropped: 0, running: 0, out: 1 });
  });

  it("gives every cell a symbol and a sentence, so colour is never the only cue", () => {
    const t = buildTimeline(rounds, ["p1", "p3"], null, new Map([["p1", "lab-a"]]));
    const p3 = t.rows.find((r) => r.id === "p3")!;
    expect(p3.cells[1]).toEqual({ round: 2, state: "rejected", symbol: "✗", label: "p3, round 2: update rejected: norm too large" });
    expect(t.rows[0].name).toBe("lab-a");
    expect(t.rows[0].cells.map((c) => c.label)).toEqual(["lab-a, round 1: reported", "lab-a, round 2: reported", "lab-a, round 3: not sampled"]);
    const symbols = Object.values(CELL_STATES).map((s) => s.symbol);
    expect(new Set(symbols).size).toBe(symbols.length);
    for (const row of t.rows) for (const c of row.cells) expect(c.symbol).toBe(CELL_STATES[c.state].symbol);
  });

  it("adds the round in progress as a last column, with refusals seen so far", () => {
    const t = buildTimeline(rounds, ["p1", "p2"], { round: 4, rejected: { p2: "offline" }, note: "round 4/9: 2 sampled" });
    expect(t.columns.at(-1)).toEqual({ round: 4, inProgress: true, title: "Round 4, in progress: round 4/9: 2 sampled" });
    const last = Object.fromEntries(t.rows.map((r) => [r.id, r.cells.at(-1)!.state]));
    expect(last).toMatchObject({ p1: "running", p2: "rejected" });
    expect(t.rows[0].cells.at(-1)!.label).toBe("p1, round 4: in progress");
    // a round that has finished meanwhile is not shown twice
    expect(buildTimeline(rounds, [], { round: 3, rejected: {} }).columns.map((c) => c.round)).toEqual([1, 2, 3]);
  });

  it("is empty before the first round", () => {
    expect(buildTimeline([], ["p1"])).toEqual({ columns: [], rows: [{ id: "p1", name: "p1", cells: [], counts: { reported: 0, rejected: 0, dropped: 0, running: 0, out: 0 } }] });
  });
});

const ev = (seq: number, kind: string, round = 0, participantId = "", message = "") => create(EventSchema, { seq: BigInt(seq), kind, round, participantId, message, runId: "r" });

describe("the round in progress, from events", () => {
  const log = [
    ev(9, "update_rejected", 3, "p2", "p2: norm too large"),
    ev(8, "round_started", 3, "", "round 3/5 (attempt 2): 2 participant(s) sampled"),
    ev(7, "update_rejected", 3, "p1", "p1: offline"), // the first attempt's
    ev(6, "round_retried", 3),
    ev(5, "round_started", 3),
    ev(4, "round_finished", 2),
    ev(3, "round_started", 2),
  ];

  it("is the newest round_started past the finished rounds, with its later refusals", () => {
    expect(roundInProgress(log, 2, true)).toEqual({ round: 3, rejected: { p2: "norm too large" }, note: "round 3/5 (attempt 2): 2 participant(s) sampled" });
  });

  it("is none when the run is not running or the round has finished", () => {
    expect(roundInProgress(log, 2, false)).toBeNull();
    expect(roundInProgress(log, 3, true)).toBeNull();
    expect(roundInProgress([], 0, true)).toBeNull();
  });
});

describe("event log merge", () => {
  it("keeps each seq once, newest first, the first copy winning", () => {
    const live = [ev(12, "log", 0, "", "live copy"), ev(13, "log")];
    const history = [ev(12, "log", 0, "", "stored copy"), ev(11, "log"), ev(10, "log")];
    const merged = mergeNewestFirst(live, history);
    expect(merged.map((e) => Number(e.seq))).toEqual([13, 12, 11, 10]);
    expect(merged[1].message).toBe("live copy");
    expect(mergeNewestFirst([], [])).toEqual([]);
  });

  it("pages back from the oldest event seen", () => {
    expect(oldestSeq([ev(12, "log"), ev(10, "log"), ev(11, "log")])).toBe(10n);
    expect(oldestSeq([])).toBe(0n);
  });
});
