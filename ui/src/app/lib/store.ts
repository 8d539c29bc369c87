import { Injectable, computed, inject, signal } from '@angular/core';
import { Api, ApiError, FieldError, Kind, errorKey } from './api';
import type { Json } from './schema-form';

export interface RunInfo {
  id: string;
  mode: string;
  status: string;
  progress?: number;
  home: string;
  error?: string | null;
  kpis?: Record<string, number | null>;
  units?: Record<string, string>;
  labels?: Record<string, string>;
}

export function blankHome(): Json {
  return {
    apiVersion: 'hometwin.io/v1alpha1',
    kind: 'Home',
    metadata: { name: 'my-home' },
    spec: {
      location: { latitude: 0, longitude: 0, timezone: 'UTC' },
      clock: { start: '2025-01-01T00:00:00', duration: '7d', step_s: 60 },
      elements: [],
    },
  };
}

/** A name for a new element of `kind` that no element has yet: `oven`, `oven-2`, … */
export function freeName(kind: string, taken: string[]): string {
  const stem = kind.replace(/_/g, '-');
  if (!taken.includes(stem)) return stem;
  for (let i = 2; ; i++) if (!taken.includes(`${stem}-${i}`)) return `${stem}-${i}`;
}

/** The home being built, its validation by the server, and the runs kept. */
@Injectable({ providedIn: 'root' })
export class HomeStore {
  private api = inject(Api);
  readonly home = signal<Json>(blankHome());
  readonly kinds = signal<Kind[]>([]);
  readonly errors = signal<FieldError[]>([]);
  readonly detail = signal<string>('');
  readonly validating = signal(false);
  readonly runs = signal<RunInfo[]>([]);
  readonly valid = computed(() => !this.validating() && this.errors().length === 0 && !this.detail());
  /** messages by field key (see errorKey) */
  readonly errorMap = computed(() => {
    const m = new Map<string, string[]>();
    for (const e of this.errors()) {
      const k = errorKey(e.path);
      m.set(k, [...(m.get(k) ?? []), e.message]);
    }
    return m;
  });
  private seq = 0;
  private timer: any = null;

  async loadKinds(): Promise<void> {
    this.kinds.set(await this.api.get<Kind[]>('/kinds'));
  }

  kind(name: string): Kind | undefined {
    return this.kinds().find((k) => k.kind === name);
  }

  set(home: Json): void {
    this.home.set(home);
    this.scheduleValidate();
  }

  updateSpec(fn: (spec: Json) => Json): void {
    const h = this.home();
    this.set({ ...h, spec: fn(h.spec) });
  }

  updateElements(fn: (els: Json[]) => Json[]): void {
    this.updateSpec((s) => ({ ...s, elements: fn([...(s.elements ?? [])]) }));
  }

  scheduleValidate(): void {
    this.validating.set(true);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.validate(), 300);
  }

  async validate(): Promise<boolean> {
    const seq = ++this.seq;
    this.validating.set(true);
    try {
      await this.api.post('/validate', { home: this.home() });
      if (seq === this.seq) {
        this.errors.set([]);
        this.detail.set('');
      }
    } catch (e) {
      if (seq === this.seq) {
        const err = e as ApiError;
        this.errors.set(err.errors ?? []);
        this.detail.set(err.errors?.length ? '' : err.message);
      }
    } finally {
      if (seq === this.seq) this.validating.set(false);
    }
    return this.valid();
  }

  async refreshRuns(): Promise<void> {
    const list = await this.api.get<RunInfo[]>('/runs');
    const known = new Map(this.runs().map((r) => [r.id, r]));
    this.runs.set(list.map((r) => ({ ...known.get(r.id), ...r })));
  }

  patchRun(id: string, patch: Partial<RunInfo>): void {
    this.runs.update((rs) => rs.map((r) => (r.id === id ? { ...r, ...patch } : r)));
  }
}
