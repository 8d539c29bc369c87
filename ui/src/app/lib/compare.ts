/** Runs side by side: each KPI's value per run and its difference in % of the first run. */

export interface RunKpis {
  id: string;
  kpis: Record<string, number | null>;
  units?: Record<string, string>;
  labels?: Record<string, string>;
}

export interface CompareRow {
  kpi: string;
  label: string;
  unit: string;
  values: (number | null)[];
  /** null for the first run, and where the first run's value is 0 or missing */
  diffPct: (number | null)[];
}

export function pctDiff(base: number | null | undefined, value: number | null | undefined): number | null {
  if (base == null || value == null || !Number.isFinite(base) || !Number.isFinite(value) || base === 0) return null;
  return ((value - base) / Math.abs(base)) * 100;
}

export function compareRows(runs: RunKpis[]): CompareRow[] {
  if (!runs.length) return [];
  const keys: string[] = [];
  for (const r of runs) for (const k of Object.keys(r.kpis)) if (!keys.includes(k)) keys.push(k);
  return keys.map((kpi) => {
    const values = runs.map((r) => (typeof r.kpis[kpi] === 'number' ? (r.kpis[kpi] as number) : null));
    const label = runs.map((r) => r.labels?.[kpi]).find(Boolean) ?? kpi;
    const unit = runs.map((r) => r.units?.[kpi]).find(Boolean) ?? '';
    return { kpi, label, unit, values, diffPct: values.map((v, i) => (i === 0 ? null : pctDiff(values[0], v))) };
  });
}

/** `+12.3 %`, `−4.0 %`, `0.0 %`, `–` */
export function formatPct(p: number | null): string {
  if (p == null) return '–';
  const r = Math.round(p * 10) / 10;
  return `${r > 0 ? '+' : r < 0 ? '−' : ''}${Math.abs(r).toFixed(1)} %`;
}
