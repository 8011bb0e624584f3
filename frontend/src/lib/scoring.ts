// Which features drove a file's score: gradient x input when the model exports its logit
// gradient, else the most unusual (standardised) feature values.

export interface Contribution {
  index: number;
  name: string;
  value: number;
  score: number; // signed: gradient x input, or the standardised value
}

export type ContributionMethod = "grad-input" | "z-score" | "magnitude";

/** The model's standardised value of one raw feature (signed log first where the model does). */
export function standardize(x: number, mean: number, std: number, log: boolean): number {
  const t = log ? Math.sign(x) * Math.log1p(Math.abs(x)) : x;
  return std > 0 ? (t - mean) / std : 0;
}

export function contributions(
  values: ArrayLike<number>,
  gradient?: ArrayLike<number> | null,
  explain?: { mean: number[]; std: number[]; log_mask: boolean[] } | null,
): { method: ContributionMethod; scores: number[] } {
  const n = values.length;
  const scores = new Array<number>(n);
  if (gradient && gradient.length === n) {
    for (let i = 0; i < n; i++) scores[i] = values[i] * gradient[i];
    return { method: "grad-input", scores };
  }
  if (explain && explain.mean.length === n && explain.std.length === n) {
    for (let i = 0; i < n; i++) {
      scores[i] = standardize(values[i], explain.mean[i], explain.std[i], !!explain.log_mask[i]);
    }
    return { method: "z-score", scores };
  }
  for (let i = 0; i < n; i++) scores[i] = values[i];
  return { method: "magnitude", scores };
}

/** The k largest |score|, largest first (ties: lower index first), named by the model. */
export function topFeatures(
  values: ArrayLike<number>,
  names: string[],
  k: number,
  gradient?: ArrayLike<number> | null,
  explain?: { mean: number[]; std: number[]; log_mask: boolean[] } | null,
): { method: ContributionMethod; top: Contribution[] } {
  const { method, scores } = contributions(values, gradient, explain);
  const order = scores
    .map((s, i) => [Number.isFinite(s) ? Math.abs(s) : -1, i] as const)
    .sort((a, b) => b[0] - a[0] || a[1] - b[1])
    .slice(0, Math.max(0, k));
  return {
    method,
    top: order.map(([, i]) => ({
      index: i,
      name: names[i] ?? `feature ${i}`,
      value: values[i],
      score: scores[i],
    })),
  };
}
