// A page's event log: history from ListEvents (newest first, paged back) merged with events
// from the live stream, so the log refills after a reload and never shows one event twice.

/** The part of an Event the merge reads. */
export interface Sequenced {
  seq: bigint;
}

/** Every event of the lists once (by seq; the first copy wins), newest first. */
export function mergeNewestFirst<T extends Sequenced>(...lists: readonly (readonly T[])[]): T[] {
  const bySeq = new Map<bigint, T>();
  for (const list of lists) for (const ev of list) if (!bySeq.has(ev.seq)) bySeq.set(ev.seq, ev);
  return [...bySeq.values()].sort((a, b) => (a.seq < b.seq ? 1 : a.seq > b.seq ? -1 : 0));
}

/** The before_seq that asks for the events older than all of these (0n: none yet). */
export function oldestSeq(events: readonly Sequenced[]): bigint {
  let oldest = 0n;
  for (const ev of events) if (oldest === 0n || ev.seq < oldest) oldest = ev.seq;
  return oldest;
}
