import { Component, computed, effect, inject, signal } from '@angular/core';
import { ActivatedRoute } from '@angular/router';
import { DecimalPipe } from '@angular/common';
import { Api } from './lib/api';
import { HomeStore, RunInfo } from './lib/store';
import { Runner } from './lib/runner';
import { compareRows, formatPct } from './lib/compare';
import { Chart } from './chart.component';

const COLORS: Record<string, string> = { pv: '#f2b705', load: '#d9534f', battery: '#2a9d8f', grid: '#4a6fa5' };

@Component({
  selector: 'app-runs',
  imports: [Chart, DecimalPipe],
  templateUrl: './runs.component.html',
})
export class Runs {
  readonly store = inject(HomeStore);
  private api = inject(Api);
  private runner = inject(Runner);
  readonly selected = signal<string | null>(null);
  readonly compareIds = signal<string[]>([]);
  readonly flows = signal<any>(null);
  readonly daily = signal<any>(null);
  readonly monthly = signal<any>(null);
  readonly message = signal('');
  readonly formatPct = formatPct;
  readonly run = computed<RunInfo | undefined>(() => this.store.runs().find((r) => r.id === this.selected()));
  readonly kpiRows = computed(() => {
    const r = this.run();
    return r?.kpis ? compareRows([{ id: r.id, kpis: r.kpis, units: r.units, labels: r.labels }]) : [];
  });
  readonly comparison = computed(() =>
    compareRows(
      this.compareIds()
        .map((id) => this.store.runs().find((r) => r.id === id))
        .filter((r): r is RunInfo => !!r?.kpis)
        .map((r) => ({ id: r.id, kpis: r.kpis!, units: r.units, labels: r.labels })),
    ),
  );
  readonly compared = computed(() => this.compareIds().filter((id) => this.store.runs().find((r) => r.id === id)?.kpis));

  readonly flowOption = computed(() => {
    const f = this.flows();
    if (!f) return null;
    const series = ['pv', 'load', 'battery', 'grid'].filter((k) => f.power_w?.[k]).map((k) => ({
      name: k, type: 'line', showSymbol: false, lineStyle: { width: 1.5 }, itemStyle: { color: COLORS[k] },
      data: f.time.map((t: number, i: number) => [t, f.power_w[k][i]]),
    }));
    return {
      tooltip: { trigger: 'axis' }, legend: { top: 0 }, grid: { left: 60, right: 20, top: 30, bottom: 50 },
      xAxis: { type: 'time' }, yAxis: { type: 'value', name: 'W' }, dataZoom: [{ type: 'slider', height: 18 }], series,
    };
  });
  readonly socOption = computed(() => {
    const f = this.flows();
    if (!f?.soc) return null;
    return {
      tooltip: { trigger: 'axis' }, grid: { left: 60, right: 20, top: 20, bottom: 30 },
      xAxis: { type: 'time' }, yAxis: { type: 'value', name: 'SoC %', min: 0, max: 100 },
      series: [{ name: 'SoC', type: 'line', showSymbol: false, areaStyle: { opacity: 0.2 }, itemStyle: { color: COLORS['battery'] },
                 data: f.time.map((t: number, i: number) => [t, f.soc[i] == null ? null : f.soc[i] * 100]) }],
    };
  });
  readonly dailyOption = computed(() => {
    const d = this.daily();
    if (!d?.days) return null;
    const stack = (group: 'sources' | 'uses', sign: number) =>
      Object.entries(d[group] ?? {}).map(([name, values]: [string, any]) => ({
        name: `${name}`, type: 'bar', stack: group, data: values.map((v: number | null) => (v == null ? null : sign * v)),
      }));
    return {
      tooltip: { trigger: 'axis' }, legend: { top: 0, type: 'scroll' }, grid: { left: 60, right: 20, top: 40, bottom: 30 },
      xAxis: { type: 'category', data: d.days }, yAxis: { type: 'value', name: 'kWh (uses < 0)' },
      series: [...stack('sources', 1), ...stack('uses', -1)],
    };
  });
  readonly monthlyOption = computed(() => {
    const m = this.monthly();
    if (!m?.months) return null;
    const bar = (name: string, data: any, color: string) => ({ name, type: 'bar', stack: 'cost', data, itemStyle: { color } });
    return {
      tooltip: { trigger: 'axis' }, legend: { top: 0 }, grid: { left: 60, right: 20, top: 30, bottom: 30 },
      xAxis: { type: 'category', data: m.months }, yAxis: { type: 'value', name: m.currency || 'cost' },
      series: [bar('energy', m.energy_cost, COLORS['grid']), bar('fixed charges', m.fixed_charges, '#999')],
    };
  });

  constructor() {
    const show = inject(ActivatedRoute).snapshot.queryParamMap.get('show');
    this.store.refreshRuns().then(() => {
      for (const r of this.store.runs()) if (r.status === 'finished' && !r.kpis) void this.runner.loadKpis(r.id);
    }, (e) => this.message.set(`runs: ${e.message}`));
    if (show) this.selected.set(show);
    effect(() => {
      const r = this.run();
      if (r?.kpis && r.id !== this.loadedFor) void this.loadPlots(r.id);
    });
  }

  private loadedFor: string | null = null;

  async loadPlots(id: string): Promise<void> {
    this.loadedFor = id;
    const [f, d, m] = await Promise.allSettled([
      this.api.get(`/runs/${id}/flows?every=15min`), this.api.get(`/runs/${id}/daily`), this.api.get(`/runs/${id}/monthly`),
    ]);
    if (this.loadedFor !== id) return;
    this.flows.set(f.status === 'fulfilled' ? f.value : null);
    this.daily.set(d.status === 'fulfilled' ? d.value : null);
    this.monthly.set(m.status === 'fulfilled' ? m.value : null);
  }

  toggleCompare(id: string, on: boolean): void {
    this.compareIds.update((ids) => (on ? [...ids.filter((x) => x !== id), id] : ids.filter((x) => x !== id)));
  }

  async stop(id: string): Promise<void> {
    try {
      const r = await this.api.call('DELETE', `/runs/${id}`);
      this.store.patchRun(id, { status: r.status });
    } catch (e: any) {
      this.message.set(`stop ${id}: ${e.message}`);
    }
  }

  diffClass(p: number | null): string {
    return p == null || Math.abs(p) < 0.05 ? '' : p > 0 ? 'up' : 'down';
  }
}
