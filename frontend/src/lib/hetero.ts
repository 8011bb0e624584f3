// The run's heterogeneity report (fedmetamal.data.heterogeneity, as JSON) for the composition chart.

export interface ClientComposition {
  label: string;
  size: number;
  malwareShare: number;
  benign: number;
  malware: number;
}

export interface Heterogeneity {
  index: number | null;
  components: Record<string, number | null>;
  clients: ClientComposition[];
}

interface Raw {
  federation?: { index?: number | null };
  components?: Record<string, number | null>;
  clients?: { client?: number; size?: number; malware_share?: number }[];
  participants?: string[];
}

/** Parses GetRun.heterogeneity_json; null when empty or unreadable. */
export function parseHeterogeneity(text: string): Heterogeneity | null {
  if (!text) return null;
  let raw: Raw;
  try {
    raw = JSON.parse(text) as Raw;
  } catch {
    return null;
  }
  const clients = (raw.clients ?? []).map((c, i) => {
    const idx = typeof c.client === "number" ? c.client : i;
    const size = Number(c.size ?? 0);
    const share = Number(c.malware_share ?? 0);
    const malware = Math.round(size * share);
    return {
      label: raw.participants?.[idx] ?? `client-${idx}`,
      size,
      malwareShare: share,
      malware,
      benign: size - malware,
    };
  });
  return {
    index: typeof raw.federation?.index === "number" ? raw.federation.index : null,
    components: raw.components ?? {},
    clients,
  };
}
