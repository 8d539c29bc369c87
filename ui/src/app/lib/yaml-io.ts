import { parse, stringify } from 'yaml';
import type { Json } from './schema-form';

/**
 * YAML text of a Home document. Written as YAML 1.1 so that every string PyYAML (YAML 1.1)
 * would read as something else — "18:00" (sexagesimal), "on" (a boolean), "2025-01-01T00:00:00"
 * (a timestamp) — is quoted, and `hometwin validate` reads back exactly what the UI holds.
 */
export function homeToYaml(home: Json): string {
  return stringify(home, { version: '1.1', lineWidth: 0 });
}

/** The Home document of YAML text (YAML 1.2 core: times and dates stay the strings they were). */
export function yamlToHome(text: string): Json {
  let doc: Json;
  try {
    doc = parse(text, { uniqueKeys: true });
  } catch (e: any) {
    throw new Error(`not valid YAML: ${String(e?.message ?? e).split('\n')[0]}`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new Error('not a Home document: expected a mapping with apiVersion, kind, metadata and spec');
  }
  if (doc.kind !== 'Home' || !doc.spec || typeof doc.spec !== 'object') {
    throw new Error(`not a Home document: kind is ${JSON.stringify(doc.kind ?? null)} and spec is ${doc.spec ? 'present' : 'missing'}`);
  }
  return doc;
}
