import { Injectable, inject } from '@angular/core';
import { Api } from './api';
import { HomeStore, RunInfo } from './store';
import type { Json } from './schema-form';

/** Starts runs and follows them until they end; a finished run's KPIs are kept with it. */
@Injectable({ providedIn: 'root' })
export class Runner {
  private api = inject(Api);
  private store = inject(HomeStore);

  async start(home: Json, days: number | null, mode: 'run' | 'live' = 'run', speed: number | 'max' = 60): Promise<string> {
    const body: Json = { home, mode };
    if (days) body.days = days;
    if (mode === 'live') body.speed = speed;
    const r = await this.api.post<RunInfo>('/runs', body);
    this.store.runs.update((rs) => [...rs.filter((x) => x.id !== r.id), { ...r, home: r.home ?? home.metadata?.name }]);
    if (mode === 'run') void this.follow(r.id);
    return r.id;
  }

  async follow(id: string): Promise<void> {
    for (;;) {
      const r = await this.api.get<RunInfo>(`/runs/${id}`);
      this.store.patchRun(id, { status: r.status, progress: r.progress, error: r.error });
      if (r.status !== 'running') break;
      await new Promise((res) => setTimeout(res, 500));
    }
    await this.loadKpis(id);
  }

  async loadKpis(id: string): Promise<void> {
    try {
      const k = await this.api.get(`/runs/${id}/kpis`);
      this.store.patchRun(id, { kpis: k.kpis, units: k.units, labels: k.labels });
    } catch {
      /* a run that settled nothing has no KPIs */
    }
  }
}
