// uint64 fields arrive as bigint; the UI and Chart.js want plain numbers.

/** bigint (or number) to number; undefined/null to 0. Exact below 2^53, which covers counts. */
export function num(value: bigint | number | undefined | null): number {
  if (value === undefined || value === null) return 0;
  return typeof value === "bigint" ? Number(value) : value;
}

/** Every bigint value of a record as a number (label counts, family counts). */
export function numRecord(rec: Record<string, bigint | number> | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(rec ?? {})) out[k] = num(v);
  return out;
}
