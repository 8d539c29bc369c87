/**
 * Form fields from a JSON Schema (the one pydantic writes for an element's config).
 *
 * Scalars (number, integer, string, boolean, enum) become inputs with their unit, range and
 * default; nested objects become groups of fields; what a flat form cannot unfold (lists of
 * objects, tariff variants) becomes a YAML text area for that one field.
 */

export type Json = any;
export type FieldKind = 'number' | 'integer' | 'string' | 'boolean' | 'enum' | 'group' | 'yaml';

export interface FieldDef {
  key: string;
  /** path from the config's root, e.g. ['source', 'cloud_cover_mean'] */
  path: string[];
  label: string;
  unit: string;
  help: string;
  kind: FieldKind;
  nullable: boolean;
  required: boolean;
  default?: unknown;
  min?: number;
  max?: number;
  exclusiveMin: boolean;
  exclusiveMax: boolean;
  options?: string[];
  pattern?: string;
  children?: FieldDef[];
}

/** `#/$defs/Name` against the root schema's `$defs`. */
export function resolveRef(schema: Json, root: Json): Json {
  let s = schema;
  for (let guard = 0; s && typeof s.$ref === 'string' && guard < 20; guard++) {
    const name = s.$ref.split('/').pop() as string;
    const target = root?.$defs?.[name] ?? root?.definitions?.[name];
    if (!target) break;
    const { $ref, ...rest } = s;
    s = { ...target, ...rest };
  }
  return s;
}

/** `[kW] usable capacity` → unit `kW`, help `usable capacity`. */
export function splitDescription(description: string | undefined): { unit: string; help: string } {
  const text = (description ?? '').trim();
  const m = /^\[([^\]]+)\]\s*(.*)$/s.exec(text);
  return m ? { unit: m[1], help: m[2] } : { unit: '', help: text };
}

/** `capacity_kwh` → `Capacity` (the unit is shown beside it), `soc_min` → `Soc min`. */
export function humanise(key: string, unit = ''): string {
  const stem = unit ? key.replace(/_(kwh|kwp|kw|w|wh|pct|deg|m|c|k|l|s|h|j)$/i, '') : key;
  const words = stem.replace(/_/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** The schema without a `null` alternative: `anyOf: [X, {type: null}]` → X, nullable. */
function unwrapNullable(schema: Json, root: Json): { schema: Json; nullable: boolean } {
  const alts: Json[] | undefined = schema.anyOf ?? (Array.isArray(schema.type) ? undefined : undefined);
  if (Array.isArray(alts)) {
    const rest = alts.filter((a) => a?.type !== 'null');
    if (rest.length === 1 && rest.length < alts.length) {
      const { anyOf, ...outer } = schema;
      return { schema: { ...resolveRef(rest[0], root), ...outer }, nullable: true };
    }
  }
  if (Array.isArray(schema.type) && schema.type.includes('null')) {
    const types = schema.type.filter((t: string) => t !== 'null');
    if (types.length === 1) return { schema: { ...schema, type: types[0] }, nullable: true };
  }
  return { schema, nullable: false };
}

/** One field for property `key` of an object schema. */
export function fieldFor(key: string, raw: Json, root: Json, path: string[], required: boolean): FieldDef {
  const resolved = resolveRef(raw, root);
  const { schema, nullable } = unwrapNullable(resolved, root);
  const { unit, help } = splitDescription(schema.description ?? resolved.description);
  const base: FieldDef = {
    key,
    path: [...path, key],
    label: humanise(key, unit),
    unit,
    help,
    kind: 'yaml',
    nullable,
    required,
    default: 'default' in resolved ? resolved.default : schema.default,
    exclusiveMin: false,
    exclusiveMax: false,
  };
  if (Array.isArray(schema.enum) && schema.enum.every((v: unknown) => typeof v === 'string')) {
    return { ...base, kind: 'enum', options: schema.enum };
  }
  if ('const' in schema && typeof schema.const === 'string') {
    return { ...base, kind: 'enum', options: [schema.const] };
  }
  switch (schema.type) {
    case 'number':
    case 'integer': {
      const f: FieldDef = { ...base, kind: schema.type };
      if (typeof schema.minimum === 'number') f.min = schema.minimum;
      if (typeof schema.exclusiveMinimum === 'number') { f.min = schema.exclusiveMinimum; f.exclusiveMin = true; }
      if (typeof schema.maximum === 'number') f.max = schema.maximum;
      if (typeof schema.exclusiveMaximum === 'number') { f.max = schema.exclusiveMaximum; f.exclusiveMax = true; }
      return f;
    }
    case 'string':
      return { ...base, kind: 'string', pattern: schema.pattern };
    case 'boolean':
      return { ...base, kind: 'boolean' };
    case 'object':
      if (schema.properties && !schema.oneOf) {
        return { ...base, kind: 'group', children: fieldsFromSchema(schema, root, base.path) };
      }
      return base;
    default:
      return base; // arrays, unions: YAML
  }
}

/** The fields of an object schema, in the schema's order. */
export function fieldsFromSchema(schema: Json, root: Json = schema, path: string[] = []): FieldDef[] {
  const s = resolveRef(schema, root);
  const props: Record<string, Json> = s?.properties ?? {};
  const required: string[] = s?.required ?? [];
  return Object.entries(props).map(([key, sub]) => fieldFor(key, sub, root, path, required.includes(key)));
}

/** `> 0, ≤ 10000` for a field's range, '' when it has none. */
export function rangeText(f: FieldDef): string {
  const parts: string[] = [];
  if (f.min !== undefined) parts.push(`${f.exclusiveMin ? '>' : '≥'} ${f.min}`);
  if (f.max !== undefined) parts.push(`${f.max !== undefined && f.exclusiveMax ? '<' : '≤'} ${f.max}`);
  return parts.join(', ');
}

export function getAt(obj: Json, path: (string | number)[]): unknown {
  let cur = obj;
  for (const p of path) {
    if (cur == null || typeof cur !== 'object') return undefined;
    cur = cur[p as any];
  }
  return cur;
}

/** A copy of `obj` with `value` at `path`; `undefined` removes the key (the default applies). */
export function setAt(obj: Json, path: string[], value: unknown): Json {
  if (path.length === 0) return value;
  const [head, ...rest] = path;
  const copy: Json = { ...(obj && typeof obj === 'object' ? obj : {}) };
  const next = rest.length ? setAt(copy[head], rest, value) : value;
  if (next === undefined || (rest.length && next && typeof next === 'object' && Object.keys(next).length === 0)) {
    delete copy[head];
  } else {
    copy[head] = next;
  }
  return copy;
}

/** The value an input's text stands for (`undefined`: left empty, the default applies). */
export function parseInput(f: FieldDef, text: string): unknown {
  const t = text.trim();
  if (t === '') return undefined;
  if (f.kind === 'number' || f.kind === 'integer') {
    const n = Number(t);
    return Number.isFinite(n) ? n : t; // the server names what is wrong with the text
  }
  return text;
}
