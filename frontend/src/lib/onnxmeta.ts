// Reads ModelProto.metadata_props (field 14) straight from the ONNX bytes: onnxruntime-web has
// no API for custom metadata. Only the top level is walked; the graph is skipped by length.

function varint(buf: Uint8Array, pos: number): [number, number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    if (pos >= buf.length) throw new Error("truncated ONNX file");
    const b = buf[pos++];
    result += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [result, pos];
    shift += 7;
    if (shift > 63) throw new Error("bad varint in ONNX file");
  }
}

function skip(buf: Uint8Array, pos: number, wire: number): number {
  switch (wire) {
    case 0:
      return varint(buf, pos)[1];
    case 1:
      return pos + 8;
    case 2: {
      const [len, p] = varint(buf, pos);
      return p + len;
    }
    case 5:
      return pos + 4;
    default:
      throw new Error(`unsupported wire type ${wire} in ONNX file`);
  }
}

const utf8 = new TextDecoder();

function entry(buf: Uint8Array): [string, string] {
  let key = "";
  let value = "";
  let pos = 0;
  while (pos < buf.length) {
    const [tag, p] = varint(buf, pos);
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 2 && (field === 1 || field === 2)) {
      const [len, q] = varint(buf, p);
      const s = utf8.decode(buf.subarray(q, q + len));
      if (field === 1) key = s;
      else value = s;
      pos = q + len;
    } else pos = skip(buf, p, wire);
  }
  return [key, value];
}

/** The model's metadata_props as a plain record of strings. */
export function onnxMetadata(bytes: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < bytes.length) {
    const [tag, p] = varint(bytes, pos);
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (field === 14 && wire === 2) {
      const [len, q] = varint(bytes, p);
      const [k, v] = entry(bytes.subarray(q, q + len));
      out[k] = v;
      pos = q + len;
    } else pos = skip(bytes, p, wire);
    if (pos > bytes.length) throw new Error("truncated ONNX file");
  }
  return out;
}

export interface DetectorMeta {
  featureNames: string[];
  threshold: number | null;
  explain: { mean: number[]; std: number[]; log_mask: boolean[] } | null;
}

function parse<T>(text: string | undefined): T | null {
  if (!text) return null;
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}

/** What the Detect page needs from FedMetaMal's exported detector metadata. */
export function detectorMeta(props: Record<string, string>): DetectorMeta {
  const names = parse<unknown>(props.feature_names);
  const threshold = parse<{ value?: unknown }>(props.threshold);
  const explain = parse<{ mean?: number[]; std?: number[]; log_mask?: boolean[] }>(props.explain);
  return {
    featureNames: Array.isArray(names) ? names.map(String) : [],
    threshold: typeof threshold?.value === "number" ? threshold.value : null,
    explain:
      explain && Array.isArray(explain.mean) && Array.isArray(explain.std) && Array.isArray(explain.log_mask)
        ? { mean: explain.mean, std: explain.std, log_mask: explain.log_mask }
        : null,
  };
}
