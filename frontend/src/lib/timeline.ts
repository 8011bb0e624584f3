// The Run page's participation timeline: one row per participant, one column per round, and
// what each participant did in each round (from ListRounds), plus the round still running.
// Each state has a symbol and a sentence, so the grid never relies on colour alone.

/** What a participant did in one round. */
export type CellState = "reported" | "rejected" | "dropped" | "running" | "out";

/** The parts of a RoundInfo the timeline reads. */
export interface RoundLike {
  round: number;
  sampled: readonly string[];
  reported: readonly string[];
  rejected: Readonly<Record<string, string>>;
}

/** The round in progress: its number, who was refused so far (id -> reason), a note. */
export interface RoundInProgress {
  round: number;
  rejected: Readonly<Record<string, string>>;
  note?: string;
}

export interface TimelineCell {
  round: number;
  state: CellState;
  symbol: string;
  /** One sentence for tooltips and screen readers: who, which round, what happened. */
  label: string;
}

export interface TimelineRow {
  id: string;
  name: string;
  cells: TimelineCell[];
  /** Rounds per state, for the row's summary. */
  counts: Record<CellState, number>;
}

export interface TimelineColumn {
  round: number;
  inProgress: boolean;
  title: string;
}

export interface Timeline {
  columns: TimelineColumn[];
  rows: TimelineRow[];
}

/** Symbol and meaning of each state (the legend shows them in this order). */
export const CELL_STATES: Record<CellState, { symbol: string; text: string }> = {
  reported: { symbol: "✓", text: "reported" },
  rejected: { symbol: "✗", text: "rejected" },
  dropped: { symbol: "–", text: "dropped (sampled, no update)" },
  running: { symbol: "…", text: "round in progress" },
  out: { symbol: "·", text: "not sampled" },
};

const collator = new Intl.Collator(undefined, { numeric: true });

/** The state of one participant in one finished round; rejection wins over a report. */
export function cellState(r: RoundLike, id: string): CellState {
  if (Object.hasOwn(r.rejected, id)) return "rejected";
  if (r.reported.includes(id)) return "reported";
  if (r.sampled.includes(id)) return "dropped";
  return "out";
}

function sentence(name: string, round: number, state: CellState, reason?: string): string {
  const what =
    state === "rejected"
      ? `update rejected${reason ? `: ${reason}` : ""}`
      : state === "running"
        ? "in progress"
        : CELL_STATES[state].text;
  return `${name}, round ${round}: ${what}`;
}

/**
 * The grid. Rows: `members` in their order (the run's slots), then anyone else seen in a round,
 * in natural order; `names` gives display names. Columns: the finished rounds in order, then
 * `current` when it is a round not finished yet.
 */
export function buildTimeline(
  rounds: readonly RoundLike[],
  members: readonly string[] = [],
  current: RoundInProgress | null = null,
  names: ReadonlyMap<string, string> = new Map(),
): Timeline {
  const finished = [...rounds].sort((a, b) => a.round - b.round);
  const done = new Set(finished.map((r) => r.round));
  const live = current && current.round > 0 && !done.has(current.round) ? current : null;

  const ids: string[] = [];
  const seen = new Set<string>();
  const add = (id: string) => {
    if (id && !seen.has(id)) {
      seen.add(id);
      ids.push(id);
    }
  };
  members.forEach(add);
  const extra = new Set<string>();
  for (const r of finished) for (const id of [...r.sampled, ...r.reported, ...Object.keys(r.rejected)]) if (!seen.has(id)) extra.add(id);
  if (live) for (const id of Object.keys(live.rejected)) if (!seen.has(id)) extra.add(id);
  [...extra].sort(collator.compare).forEach(add);

  const columns: TimelineColumn[] = finished.map((r) => ({
    round: r.round,
    inProgress: false,
    title: `Round ${r.round}: ${r.sampled.length} sampled, ${r.reported.length} reported, ${Object.keys(r.rejected).length} rejected`,
  }));
  if (live) columns.push({ round: live.round, inProgress: true, title: `Round ${live.round}, in progress${live.note ? `: ${live.note}` : ""}` });

  const rows = ids.map((id) => {
    const name = names.get(id) || id;
    const counts: Record<CellState, number> = { reported: 0, rejected: 0, dropped: 0, running: 0, out: 0 };
    const cells = finished.map((r) => {
      const state = cellState(r, id);
      counts[state]++;
      return { round: r.round, state, symbol: CELL_STATES[state].symbol, label: sentence(name, r.round, state, r.rejected[id]) };
    });
    if (live) {
      const state: CellState = Object.hasOwn(live.rejected, id) ? "rejected" : "running";
      counts[state]++;
      cells.push({ round: live.round, state, symbol: CELL_STATES[state].symbol, label: sentence(name, live.round, state, live.rejected[id]) });
    }
    return { id, name, cells, counts };
  });
  return { columns, rows };
}

/** The minimal event shape the in-progress round is read from. */
export interface EventLike {
  seq: bigint;
  kind: string;
  round: number;
  participantId: string;
  message: string;
}

/**
 * The round running now, from the run's events: the newest round_started above the finished
 * rounds, with the update_rejected events of that round seen since. Null when the run is not
 * running or no round has started past the finished ones.
 */
export function roundInProgress(events: readonly EventLike[], finished: number, running: boolean): RoundInProgress | null {
  if (!running) return null;
  let start: EventLike | null = null;
  for (const ev of events) {
    if (ev.kind === "round_started" && ev.round > finished && (!start || ev.seq > start.seq)) start = ev;
  }
  if (!start) return null;
  const rejected: Record<string, string> = {};
  for (const ev of events) {
    if (ev.kind === "update_rejected" && ev.round === start.round && ev.seq > start.seq && ev.participantId) {
      rejected[ev.participantId] = ev.message.startsWith(`${ev.participantId}: `) ? ev.message.slice(ev.participantId.length + 2) : ev.message;
    }
  }
  return { round: start.round, rejected, note: start.message };
}
