import { Component, computed, inject, signal } from '@angular/core';
import { Router } from '@angular/router';
import { CdkDrag, CdkDragDrop, CdkDropList, moveItemInArray } from '@angular/cdk/drag-drop';
import { Api, Kind } from './lib/api';
import { HomeStore, freeName } from './lib/store';
import { FieldDef, Json, fieldsFromSchema, getAt } from './lib/schema-form';
import { homeToYaml, yamlToHome } from './lib/yaml-io';
import { symbol } from './lib/icons';
import { SchemaForm } from './schema-form.component';
import { Runner } from './lib/runner';

const LOCATION: FieldDef[] = fieldsFromSchema({
  type: 'object',
  properties: {
    latitude: { type: 'number', minimum: -90, maximum: 90, description: '[°] north positive' },
    longitude: { type: 'number', minimum: -180, maximum: 180, description: '[°] east positive' },
    altitude_m: { type: 'number', minimum: -500, maximum: 9000, default: 0, description: '[m] above sea level' },
    timezone: { type: 'string', default: 'UTC', description: 'IANA time zone, e.g. Africa/Johannesburg' },
  },
});

const CLOCK: FieldDef[] = fieldsFromSchema({
  type: 'object',
  properties: {
    start: { type: 'string', description: 'first step, local time of the home (YYYY-MM-DDTHH:MM:SS)' },
    duration: { type: 'string', description: "run length, e.g. '7d', '36h', '365d'" },
    step_s: { type: 'integer', minimum: 1, maximum: 86400, default: 60, description: '[s] simulation step' },
    seed: { type: 'integer', minimum: 0, default: 0, description: 'seed of every random stream' },
  },
});

@Component({
  selector: 'app-builder',
  imports: [CdkDropList, CdkDrag, SchemaForm],
  templateUrl: './builder.component.html',
})
export class Builder {
  readonly store = inject(HomeStore);
  private api = inject(Api);
  private runner = inject(Runner);
  private router = inject(Router);
  readonly symbol = symbol;
  readonly noEnter = () => false;
  readonly locationFields = LOCATION;
  readonly clockFields = CLOCK;
  readonly examples = signal<{ name: string; title: string }[]>([]);
  readonly yamlText = signal('');
  readonly notice = signal('');
  readonly days = signal(2);
  readonly collapsed = signal<Set<number>>(new Set());
  readonly elements = computed<Json[]>(() => this.store.home().spec?.elements ?? []);
  readonly formsByKind = computed(() => {
    const m = new Map<string, FieldDef[]>();
    for (const k of this.store.kinds()) m.set(k.kind, fieldsFromSchema(k.schema, k.schema));
    return m;
  });

  constructor() {
    this.api.get('/examples').then((x) => this.examples.set(x), (e) => this.notice.set(`examples: ${e.message}`));
    if (!this.store.kinds().length) this.store.loadKinds().catch((e) => this.notice.set(`kinds: ${e.message}`));
    this.store.scheduleValidate();
  }

  kindOf(name: string): Kind | undefined {
    return this.store.kind(name);
  }

  add(kind: string, index?: number): void {
    const taken = this.elements().map((e) => e.name);
    const el = { name: freeName(kind, taken), kind };
    this.store.updateElements((els) => {
      els.splice(index ?? els.length, 0, el);
      return els;
    });
    this.notice.set(`added ${el.name} (${kind})`);
  }

  drop(ev: CdkDragDrop<any>): void {
    if (ev.previousContainer === ev.container) {
      this.store.updateElements((els) => {
        moveItemInArray(els, ev.previousIndex, ev.currentIndex);
        return els;
      });
    } else {
      this.add(ev.item.data as string, ev.currentIndex);
    }
  }

  move(i: number, by: number): void {
    const j = i + by;
    if (j < 0 || j >= this.elements().length) return;
    this.store.updateElements((els) => {
      moveItemInArray(els, i, j);
      return els;
    });
  }

  remove(i: number): void {
    const name = this.elements()[i]?.name;
    this.store.updateElements((els) => els.filter((_, k) => k !== i));
    this.notice.set(`removed ${name}`);
  }

  patchElement(i: number, patch: Json): void {
    this.store.updateElements((els) => els.map((e, k) => (k === i ? clean({ ...e, ...patch }) : e)));
  }

  toggle(i: number): void {
    const s = new Set(this.collapsed());
    s.has(i) ? s.delete(i) : s.add(i);
    this.collapsed.set(s);
  }

  setSection(section: 'location' | 'clock', value: Json): void {
    this.store.updateSpec((s) => ({ ...s, [section]: value }));
  }

  setName(name: string): void {
    const h = this.store.home();
    this.store.set({ ...h, metadata: { ...h.metadata, name } });
  }

  messages(key: string): string[] {
    return this.store.errorMap().get(key) ?? [];
  }

  /** messages of element i that no field of its form shows (its name, kind, or the element as a whole) */
  elementMessages(i: number): string[] {
    const fields = this.formsByKind().get(this.elements()[i]?.kind) ?? [];
    const shown = new Set<string>();
    const walk = (fs: FieldDef[]) => fs.forEach((f) => (f.children ? walk(f.children) : shown.add(`elements.${i}.config.${f.path.join('.')}`)));
    walk(fields);
    const out: string[] = [];
    for (const [k, ms] of this.store.errorMap()) {
      if ((k === `elements.${i}` || k.startsWith(`elements.${i}.`)) && !shown.has(k)) out.push(...ms.map((m) => (k === `elements.${i}` ? m : `${k.split('.').slice(2).join('.')}: ${m}`)));
    }
    return out;
  }

  /** messages that belong to no element and no settings field */
  otherMessages(): string[] {
    const out: string[] = [];
    for (const [k, ms] of this.store.errorMap()) {
      if (!/^(elements\.\d+|location\.|clock\.|metadata\.name)/.test(k)) out.push(...ms.map((m) => (k ? `${k}: ${m}` : m)));
    }
    return out;
  }

  async loadExample(name: string): Promise<void> {
    if (!name) return;
    try {
      const ex = await this.api.get(`/examples/${encodeURIComponent(name)}`);
      this.store.set(yamlToHome(ex.yaml));
      this.collapsed.set(new Set(this.elements().map((_, i) => i)));
      this.notice.set(`loaded example ${name}`);
    } catch (e: any) {
      this.notice.set(`example ${name}: ${e.message}`);
    }
  }

  exportYaml(): void {
    this.yamlText.set(homeToYaml(this.store.home()));
    this.notice.set('exported the home as YAML below');
  }

  download(): void {
    const text = homeToYaml(this.store.home());
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([text], { type: 'application/yaml' }));
    a.download = `${this.store.home().metadata?.name ?? 'home'}.yaml`;
    a.click();
    URL.revokeObjectURL(a.href);
  }

  importYaml(text: string): void {
    try {
      this.store.set(yamlToHome(text));
      this.notice.set('imported the YAML');
    } catch (e: any) {
      this.notice.set(`import: ${e.message}`);
    }
  }

  async importFile(ev: Event): Promise<void> {
    const file = (ev.target as HTMLInputElement).files?.[0];
    if (!file) return;
    const text = await file.text();
    this.yamlText.set(text);
    this.importYaml(text);
  }

  async run(): Promise<void> {
    if (!(await this.store.validate())) {
      this.notice.set('the home has problems: fix the fields marked in red first');
      return;
    }
    try {
      const id = await this.runner.start(this.store.home(), this.days());
      this.router.navigate(['/runs'], { queryParams: { show: id } });
    } catch (e: any) {
      this.notice.set(`run: ${e.message}`);
    }
  }

  /** `hometwin serve --kubernetes`: create or update the Home resource instead of a local twin. */
  async apply(): Promise<void> {
    try {
      const r = await this.api.post('/apply', { home: this.store.home() });
      this.notice.set(`${r.created ? 'created' : 'updated'} Home ${r.namespace}/${r.name} in the cluster`);
    } catch (e: any) {
      this.notice.set(`apply: ${e.message}`);
    }
  }

  get(obj: Json, path: string): any {
    return getAt(obj, path.split('.'));
  }
}

function clean(el: Json): Json {
  const out = { ...el };
  if (out.config && Object.keys(out.config).length === 0) delete out.config;
  if (out.enabled === true) delete out.enabled;
  return out;
}
