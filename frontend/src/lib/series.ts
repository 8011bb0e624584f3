// Per-round metric series for the charts: built from ListRounds (history), then extended by
// round_finished events (live). Keyed by round, so a replayed event changes nothing.

export interface RoundMetrics {
  round: number;
  metrics: Record<string, number>;
}

export interface Point {
  x: number;
  y: number;
}

export interface Series {
  key: string;
  points: Point[];
}

/** The charts of the Run page: each collects every metric key that ends with its suffix. */
export const METRIC_GROUPS: { id: string; title: string; match: (key: string) => boolean }[] = [
  { id: "loss", title: "Loss", match: (k) => k === "loss" || k.endsWith("_loss") },
  { id: "accuracy", title: "Accuracy", match: (k) => k === "accuracy" || k.endsWith("_accuracy") },
  { id: "roc_auc", title: "ROC AUC", match: (k) => k === "roc_auc" || k.endsWith("_roc_auc") },
  {
    id: "tpr_at_1pct_fpr",
    title: "TPR at 1% FPR",
    match: (k) => k === "tpr_at_1pct_fpr" || k.endsWith("_tpr_at_1pct_fpr"),
  },
  { id: "epsilon", title: "Privacy ε", match: (k) => k === "epsilon" },
];

/** Adds (or replaces) one round's metrics; keeps rounds sorted. Returns the same array. */
export function upsertRound(rows: RoundMetrics[], round: number, metrics: Record<string, number>): RoundMetrics[] {
  const i = rows.findIndex((r) => r.round === round);
  const clean: Record<string, number> = {};
  for (const [k, v] of Object.entries(metrics)) if (Number.isFinite(v)) clean[k] = v;
  if (i >= 0) rows[i] = { round, metrics: { ...rows[i].metrics, ...clean } };
  else {
    rows.push({ round, metrics: clean });
    rows.sort((a, b) => a.round - b.round);
  }
  return rows;
}

/** RoundInfo-like records (ListRounds) to sorted rows. */
export function roundsToRows(rounds: { round: number; metrics: Record<string, number> }[]): RoundMetrics[] {
  const rows: RoundMetrics[] = [];
  for (const r of rounds) upsertRound(rows, r.round, r.metrics);
  return rows;
}

/** Every metric key present, sorted. */
export function metricKeys(rows: RoundMetrics[]): string[] {
  const keys = new Set<string>();
  for (const r of rows) for (const k of Object.keys(r.metrics)) keys.add(k);
  return [...keys].sort();
}

/** One series per key (points only where the round has that metric). */
export function buildSeries(rows: RoundMetrics[], keys: string[]): Series[] {
  return keys.map((key) => ({
    key,
    points: rows.filter((r) => key in r.metrics).map((r) => ({ x: r.round, y: r.metrics[key] })),
  }));
}

/** The series of one chart group (e.g. all loss variants), empty ones left out. */
export function groupSeries(rows: RoundMetrics[], match: (key: string) => boolean): Series[] {
  return buildSeries(rows, metricKeys(rows).filter(match)).filter((s) => s.points.length > 0);
}

/** The last value of each metric (the final metrics of a run). */
export function finalMetrics(rows: RoundMetrics[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rows) Object.assign(out, r.metrics);
  return out;
}

/** Per-participant series of one client metric (e.g. "train_loss", "test_roc_auc") from
 * ListRounds' client_metrics: one series per participant, points where it reported it. */
export function clientSeries(
  rounds: { round: number; clientMetrics: Record<string, { values: Record<string, number> }> }[],
  key: string,
): Series[] {
  const byClient = new Map<string, Point[]>();
  for (const r of [...rounds].sort((a, b) => a.round - b.round)) {
    for (const [client, m] of Object.entries(r.clientMetrics ?? {})) {
      const v = m?.values?.[key];
      if (v === undefined || !Number.isFinite(v)) continue;
      if (!byClient.has(client)) byClient.set(client, []);
      byClient.get(client)!.push({ x: r.round, y: v });
    }
  }
  return [...byClient.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, points]) => ({ key: k, points }));
}

/** A participant's value of ``key`` in the latest round where it reported one. */
export function latestClientValue(
  rounds: { round: number; clientMetrics: Record<string, { values: Record<string, number> }> }[],
  client: string,
  key: string,
): number | undefined {
  let best: { round: number; v: number } | undefined;
  for (const r of rounds) {
    const v = r.clientMetrics?.[client]?.values?.[key];
    if (v !== undefined && Number.isFinite(v) && (!best || r.round > best.round)) best = { round: r.round, v };
  }
  return best?.v;
}
