// CSV export done in the browser (RFC 4180 quoting), and a helper to save any Blob.

export type Cell = string | number | null | undefined;

function cell(v: Cell): string {
  if (v === null || v === undefined) return "";
  const s = typeof v === "number" ? (Number.isFinite(v) ? String(v) : "") : v;
  return /[",\r\n]/.test(s) || /^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(header: string[], rows: Cell[][]): string {
  return [header, ...rows].map((r) => r.map(cell).join(",")).join("\r\n") + "\r\n";
}

/** Wide table: one row per round, one column per series (blank where a series has no point). */
export function seriesToCsv(series: { name: string; points: { x: number; y: number }[] }[]): string {
  const rounds = [...new Set(series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const lookup = series.map((s) => new Map(s.points.map((p) => [p.x, p.y])));
  return toCsv(
    ["round", ...series.map((s) => s.name)],
    rounds.map((r) => [r, ...lookup.map((m) => m.get(r))]),
  );
}

export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function saveText(text: string, filename: string, type = "text/csv"): void {
  saveBlob(new Blob([text], { type }), filename);
}

export function saveDataUrl(dataUrl: string, filename: string): void {
  const a = document.createElement("a");
  a.href = dataUrl;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
}
