import { Component, OnDestroy, computed, inject, signal } from '@angular/core';
import { DecimalPipe } from '@angular/common';
import { Api } from './lib/api';
import { HomeStore } from './lib/store';
import { Runner } from './lib/runner';
import { symbol } from './lib/icons';

export interface Node {
  key: string; // power_w key: pv, battery, grid, el.<name>
  label: string;
  icon: string;
  x: number;
  y: number;
}

/** Height of the diagram: room for every load on the right, 70 units apart. */
export function diagramHeight(nLoads: number): number {
  return Math.max(470, 70 * nLoads + 40);
}

/** `1.23 kW`, `850 W` */
export function formatPower(w: number | null | undefined): string {
  if (w == null || !Number.isFinite(w)) return '–';
  const a = Math.abs(w);
  return a >= 1000 ? `${(a / 1000).toFixed(2)} kW` : `${Math.round(a)} W`;
}

/** Nodes of the flow diagram: PV, grid and battery on the left, each load on the right, the inverter between. */
export function layout(loads: { name: string; icon: string }[]): Node[] {
  const h = diagramHeight(loads.length);
  const left: Node[] = [
    { key: 'pv', label: 'PV', icon: symbol('solar_power'), x: 90, y: h / 2 - 160 },
    { key: 'grid', label: 'Grid', icon: symbol('electric_meter'), x: 90, y: h / 2 },
    { key: 'battery', label: 'Battery', icon: symbol('battery_charging_full'), x: 90, y: h / 2 + 160 },
  ];
  const n = loads.length;
  const right = loads.map((l, i) => ({
    key: `el.${l.name}`, label: l.name, icon: l.icon, x: 640, y: h / 2 + 70 * (i - (n - 1) / 2),
  }));
  return [...left, ...right];
}

@Component({
  selector: 'app-live',
  imports: [DecimalPipe],
  templateUrl: './live.component.html',
})
export class Live implements OnDestroy {
  readonly store = inject(HomeStore);
  private api = inject(Api);
  private runner = inject(Runner);
  readonly formatPower = formatPower;
  readonly runId = signal<string | null>(null);
  readonly state = signal<string>('');
  readonly speed = signal<number | null>(null);
  readonly simTime = signal<number | null>(null);
  readonly power = signal<Record<string, number>>({});
  readonly soc = signal<number | null>(null);
  readonly temps = signal<Record<string, Record<string, number>>>({});
  readonly windows = signal(0);
  /** elements in the newest window (an element switched off is not) */
  readonly roster = signal<Set<string> | null>(null);
  readonly answer = signal<string>('');
  /** the newest control events of the twin (who switched or set what), newest first */
  readonly events = signal<string[]>([]);
  readonly message = signal('');
  readonly off = signal<Set<string>>(new Set());
  readonly speedInput = signal(60);
  readonly days = signal(1);
  readonly propElement = signal('');
  readonly propName = signal('');
  readonly propValue = signal('');
  private es: EventSource | null = null;
  private pending: any = null;
  private frame = 0;

  readonly timezone = computed(() => this.store.home().spec?.location?.timezone ?? 'UTC');
  readonly switchable = computed(() =>
    (this.store.home().spec?.elements ?? []).filter((e: any) => !['environment', 'converter'].includes(this.store.kind(e.kind)?.role ?? '')),
  );
  readonly loads = computed(() =>
    (this.store.home().spec?.elements ?? [])
      .filter((e: any) => this.store.kind(e.kind)?.role === 'load')
      .map((e: any) => ({ name: e.name, icon: symbol(this.store.kind(e.kind)?.icon, e.kind) })),
  );
  readonly nodes = computed(() => layout(this.loads()));
  readonly height = computed(() => diagramHeight(this.loads().length));
  readonly inverter = computed(() => ({ x: 360, y: this.height() / 2 }));
  readonly localTime = computed(() => {
    const t = this.simTime();
    if (t == null) return '–';
    try {
      return new Intl.DateTimeFormat('en-GB', {
        timeZone: this.timezone(), year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
      }).format(new Date(t));
    } catch {
      return new Date(t).toISOString();
    }
  });
  readonly tempEntries = computed(() => {
    const out: { key: string; element: string; what: string; value: number }[] = [];
    for (const [el, vals] of Object.entries(this.temps() ?? {}))
      for (const [what, v] of Object.entries(vals ?? {})) if (typeof v === 'number') out.push({ key: `${el}.${what}`, element: el, what: what.replace(/_/g, ' '), value: v });
    return out;
  });
  /** the properties the chosen element takes while it runs (GET /api/kinds: settable) */
  readonly settable = computed<string[]>(() => {
    const name = this.propElement() || this.switchable()[0]?.name;
    const el = (this.store.home().spec?.elements ?? []).find((e: any) => e.name === name);
    return ((el && (this.store.kind(el.kind) as any)?.settable) ?? []) as string[];
  });
  readonly liveRuns = computed(() => this.store.runs().filter((r) => r.mode === 'live'));

  constructor() {
    if (!this.store.kinds().length) this.store.loadKinds().catch((e) => this.message.set(`kinds: ${e.message}`));
    this.store.refreshRuns().catch(() => undefined);
  }

  /** the power on a node's edge [W]: + toward the inverter, − away from it */
  value(key: string): number {
    const p = this.power()[key];
    return p == null || !Number.isFinite(p) ? 0 : p;
  }

  /** how fast the dashes move: a full cycle in 2 s at 100 W, 0.3 s at 5 kW and more */
  duration(w: number): string {
    const a = Math.min(Math.abs(w), 5000);
    return `${(2 - (1.7 * a) / 5000).toFixed(2)}s`;
  }

  async start(): Promise<void> {
    this.message.set('');
    try {
      const id = await this.runner.start(this.store.home(), this.days(), 'live', this.speedInput());
      this.attach(id);
    } catch (e: any) {
      this.message.set(`start: ${e.message}`);
    }
  }

  attach(id: string): void {
    this.detach();
    this.runId.set(id);
    this.windows.set(0);
    this.off.set(new Set());
    this.events.set([]);
    const es = this.api.stream(id);
    this.es = es;
    es.addEventListener('flows', (ev) => this.onFlows(JSON.parse((ev as MessageEvent).data)));
    es.addEventListener('clock', (ev) => this.onClock(JSON.parse((ev as MessageEvent).data)));
    es.addEventListener('event', (ev) => {
      const e = JSON.parse((ev as MessageEvent).data);
      const what = [e.source, e.action, e.element].filter(Boolean).join(' ');
      this.events.update((list) => [`step ${e.step ?? '?'}: ${what}${e.by ? ' (by ' + e.by + ')' : ''}`, ...list].slice(0, 8));
    });
    es.addEventListener('end', (ev) => {
      const e = JSON.parse((ev as MessageEvent).data);
      this.state.set(e.status ?? 'ended');
      if (e.error) this.message.set(e.error);
      es.close();
    });
  }

  detach(): void {
    this.es?.close();
    this.es = null;
    cancelAnimationFrame(this.frame);
  }

  /** Flows arrive per window; the view takes the newest once per animation frame. */
  private onFlows(e: any): void {
    this.pending = e;
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        const f = this.pending;
        if (!f) return;
        this.pending = null;
        const last: Record<string, number> = {};
        for (const [k, arr] of Object.entries<any>(f.power_w ?? {})) if (arr?.length) last[k] = arr[arr.length - 1];
        this.power.set(last);
        if (f.soc?.length) this.soc.set(f.soc[f.soc.length - 1]);
        if (f.temps) this.temps.set(f.temps);
        if (Array.isArray(f.roster)) this.roster.set(new Set(f.roster));
        if (f.time?.length) this.simTime.set(f.time[f.time.length - 1]);
        this.windows.update((n) => n + 1);
      });
    }
  }

  private onClock(c: any): void {
    this.state.set(c.state);
    const id = this.runId();
    if (id && c.state) this.store.patchRun(id, { status: c.state === 'done' ? 'finished' : c.state });
    if (c.speed != null) this.speed.set(c.speed);
    if (c.sim_time != null && c.state !== 'running') this.simTime.set(c.sim_time);
  }

  async clock(op: 'pause' | 'resume' | 'set_speed'): Promise<void> {
    const id = this.runId();
    if (!id) return;
    try {
      const body: any = { op };
      if (op === 'set_speed') body.speed = this.speedInput();
      const r = await this.api.post(`/runs/${id}/clock`, body);
      if (r.clock) this.onClock(r.clock);
      this.answer.set(`${op}: ok`);
    } catch (e: any) {
      this.answer.set(`${op}: ${e.message}`);
    }
  }

  async toggle(name: string): Promise<void> {
    const id = this.runId();
    if (!id) return;
    const on = this.off().has(name);
    try {
      const r = await this.api.post(`/runs/${id}/elements/${encodeURIComponent(name)}/switch`, { on });
      const s = new Set(this.off());
      on ? s.delete(name) : s.add(name);
      this.off.set(s);
      this.answer.set(`${name} switched ${on ? 'on' : 'off'}: ${JSON.stringify(r)}`);
    } catch (e: any) {
      this.answer.set(`switch ${name}: ${e.message}`);
    }
  }

  isOff(n: Node): boolean {
    const name = n.key.startsWith('el.') ? n.key.slice(3) : '';
    const roster = this.roster();
    return !!name && (this.off().has(name) || (roster !== null && !roster.has(name)));
  }

  async setProp(): Promise<void> {
    const id = this.runId();
    const name = this.propElement() || this.switchable()[0]?.name;
    const prop = this.propName() || this.settable()[0];
    if (!id || !name || !prop) return;
    let value: any = this.propValue();
    try {
      value = JSON.parse(value);
    } catch {
      /* a plain string */
    }
    try {
      const r = await this.api.post(`/runs/${id}/elements/${encodeURIComponent(name)}/set`, { props: { [prop]: value } });
      this.answer.set(`${name}.${prop} = ${JSON.stringify(value)}: ${JSON.stringify(r)}`);
    } catch (e: any) {
      const msgs = (e.errors ?? []).map((x: any) => `${x.field}: ${x.message}`).join('; ');
      this.answer.set(`refused: ${msgs || e.message}`);
    }
  }

  async stop(): Promise<void> {
    const id = this.runId();
    if (!id) return;
    try {
      await this.api.call('DELETE', `/runs/${id}`);
    } catch (e: any) {
      this.message.set(`stop: ${e.message}`);
    }
  }

  ngOnDestroy(): void {
    this.detach();
  }
}
