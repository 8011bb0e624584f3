// Display helpers shared by the pages.

export function fmtTime(unix: number): string {
  if (!unix) return "—";
  return new Date(unix * 1000).toLocaleString();
}

export function fmtAgo(unix: number, now: number = Date.now() / 1000): string {
  if (!unix) return "never";
  const s = Math.max(0, Math.round(now - unix));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function fmtNum(v: number | undefined, digits = 4): string {
  if (v === undefined || v === null || Number.isNaN(v)) return "—";
  if (Number.isInteger(v)) return v.toLocaleString();
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return v.toFixed(digits);
}

export function fmtPct(v: number | undefined, digits = 1): string {
  if (v === undefined || v === null || Number.isNaN(v)) return "—";
  return `${(v * 100).toFixed(digits)} %`;
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

const LABELS: Record<string, string> = {
  loss: "Loss",
  train_loss: "Train loss",
  accuracy: "Accuracy",
  roc_auc: "ROC AUC",
  pr_auc: "PR AUC",
  epsilon: "ε (DP)",
  f1: "F1",
  n: "Rows evaluated",
};

/** A key without a fixed label, readable: "tpr_at_0.1pct_fpr" -> "TPR at 0.1% FPR". */
function humanize(key: string): string {
  const rate = /^tpr_at_([\d.]+)pct_fpr$/.exec(key);
  if (rate) return `TPR at ${rate[1]}% FPR`;
  const words = key.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** "test_roc_auc" -> "ROC AUC (test)". */
export function metricLabel(key: string): string {
  for (const prefix of ["test_", "local_"]) {
    if (key.startsWith(prefix)) {
      const base = key.slice(prefix.length);
      return `${LABELS[base] ?? humanize(base)} (${prefix.slice(0, -1)})`;
    }
  }
  return LABELS[key] ?? humanize(key);
}

/** Headline metrics first, then the rest by name, then the evaluation set's size and mix. */
const METRIC_ORDER = ["roc_auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "accuracy", "f1", "precision", "recall", "loss", "train_loss", "epsilon"];
const METRIC_LAST = ["malware_share", "n"];

export function orderMetrics<T>(metrics: Record<string, T>): [string, T][] {
  const rank = (k: string): number => {
    const base = k.replace(/^(test_|local_)/, "");
    const i = METRIC_ORDER.indexOf(base);
    if (i >= 0) return i;
    return METRIC_LAST.includes(base) ? 1000 + METRIC_LAST.indexOf(base) : 500;
  };
  return Object.entries(metrics).sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
}
