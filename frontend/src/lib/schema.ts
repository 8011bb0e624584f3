// A small reader for the pydantic JSON Schema of RunConfig: enough to render a form
// ($ref, anyOf-with-null, enum, number bounds, arrays of scalars, nested objects).

export interface JsonSchema {
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, JsonSchema>;
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  required?: string[];
}

export type FieldKind = "object" | "enum" | "boolean" | "integer" | "number" | "string" | "list" | "json";

export interface FieldInfo {
  kind: FieldKind;
  schema: JsonSchema; // with $ref resolved and null branch removed
  nullable: boolean;
  options: unknown[];
  itemKind?: "integer" | "number" | "string";
}

export function resolveRef(schema: JsonSchema, root: JsonSchema): JsonSchema {
  let s = schema;
  for (let i = 0; i < 16 && s.$ref; i++) {
    const m = /^#\/(\$defs|definitions)\/(.+)$/.exec(s.$ref);
    const target = m ? (root as Record<string, Record<string, JsonSchema> | undefined>)[m[1]]?.[m[2]] : undefined;
    if (!target) break;
    const { $ref: _ignored, ...rest } = s;
    void _ignored;
    s = { ...target, ...rest };
  }
  if (s.allOf?.length === 1) s = { ...resolveRef(s.allOf[0], root), ...s, allOf: undefined };
  return s;
}

function typeOf(s: JsonSchema): string | undefined {
  if (Array.isArray(s.type)) return s.type.find((t) => t !== "null");
  return s.type;
}

/** How to render one property. */
export function fieldInfo(schema: JsonSchema, root: JsonSchema): FieldInfo {
  let s = resolveRef(schema, root);
  let nullable = Array.isArray(s.type) && s.type.includes("null");
  const branches = s.anyOf ?? s.oneOf;
  if (branches) {
    const nonNull = branches.filter((b) => b.type !== "null");
    nullable = nullable || nonNull.length < branches.length;
    if (nonNull.length >= 1) {
      const { anyOf: _a, oneOf: _o, ...outer } = s;
      void _a;
      void _o;
      s = { ...resolveRef(nonNull[0], root), ...outer };
    }
  }
  const t = typeOf(s);
  if (s.enum) return { kind: "enum", schema: s, nullable, options: s.enum };
  if (t === "boolean") return { kind: "boolean", schema: s, nullable, options: [] };
  if (t === "integer") return { kind: "integer", schema: s, nullable, options: [] };
  if (t === "number") return { kind: "number", schema: s, nullable, options: [] };
  if (t === "string") return { kind: "string", schema: s, nullable, options: [] };
  if (t === "array") {
    const item = s.items ? resolveRef(s.items, root) : {};
    const it = typeOf(item);
    if (it === "integer" || it === "number" || it === "string") {
      return { kind: "list", schema: s, nullable, options: [], itemKind: it };
    }
    return { kind: "json", schema: s, nullable, options: [] };
  }
  if ((t === "object" || s.properties) && s.properties && Object.keys(s.properties).length > 0) {
    return { kind: "object", schema: s, nullable, options: [] };
  }
  return { kind: "json", schema: s, nullable, options: [] };
}

/** "client_lr" / title "Client Lr" -> "Client lr". */
export function fieldLabel(name: string, schema: JsonSchema): string {
  const base = schema.title ?? name.replace(/_/g, " ");
  return base.charAt(0).toUpperCase() + base.slice(1).toLowerCase().replace(/\bs\b$/, "(s)");
}

export function getPath(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** A deep copy of JSON data; works on Vue's reactive proxies, which structuredClone rejects. */
export function cloneJson<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

/** A copy of obj with the dotted path set (intermediate objects created). */
export function setPath<T>(obj: T, path: string, value: unknown): T {
  const parts = path.split(".");
  const root = cloneJson(obj ?? {}) as Record<string, unknown>;
  let cur = root;
  for (const part of parts.slice(0, -1)) {
    const next = cur[part];
    if (next === null || typeof next !== "object" || Array.isArray(next)) cur[part] = {};
    cur = cur[part] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]] = value;
  return root as T;
}

/** The errors that belong to a field: its own path, or a deeper one for leaf fields. */
export function errorsFor(errors: { path: string; message: string }[], path: string, leaf: boolean): string[] {
  return errors
    .filter((e) => e.path === path || (leaf && e.path.startsWith(path + ".")))
    .map((e) => e.message);
}

/** Parses what was typed into a field of the given kind (undefined: not a valid value yet). */
export function parseInput(info: FieldInfo, text: string): unknown {
  const t = text.trim();
  if (t === "" && info.nullable) return null;
  switch (info.kind) {
    case "integer": {
      if (!/^-?\d+$/.test(t)) return undefined;
      return Number.parseInt(t, 10);
    }
    case "number": {
      const v = Number(t);
      return t === "" || !Number.isFinite(v) ? undefined : v;
    }
    case "list": {
      if (t === "") return [];
      const parts = t.split(",").map((p) => p.trim());
      if (info.itemKind === "string") return parts;
      const nums = parts.map(Number);
      if (nums.some((n) => !Number.isFinite(n))) return undefined;
      if (info.itemKind === "integer" && nums.some((n) => !Number.isInteger(n))) return undefined;
      return nums;
    }
    case "json": {
      try {
        return JSON.parse(t === "" ? "null" : t);
      } catch {
        return undefined;
      }
    }
    default:
      return text;
  }
}

/** The text shown in an input for a value. */
export function formatInput(info: FieldInfo, value: unknown): string {
  if (value === null || value === undefined) return "";
  if (info.kind === "list" && Array.isArray(value)) return value.join(", ");
  if (info.kind === "json") return JSON.stringify(value, null, 2);
  return String(value);
}
