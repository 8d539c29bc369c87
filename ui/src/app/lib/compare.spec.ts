import { RunKpis, compareRows, formatPct, pctDiff } from './compare';

describe('comparison table', () => {
  // three runs of one home: a 10 kWh battery, a 15 kWh battery, no export tariff; figures by hand
  const runs: RunKpis[] = [
    { id: 'r1', kpis: { total_cost: 2000, self_sufficiency: 60, unserved_kwh: 0, pv_kwh: 8000 },
      units: { total_cost: 'ZAR', self_sufficiency: '%', unserved_kwh: 'kWh' }, labels: { total_cost: 'Total cost' } },
    { id: 'r2', kpis: { total_cost: 1500, self_sufficiency: 75, unserved_kwh: 2, pv_kwh: 8000 } },
    { id: 'r3', kpis: { total_cost: 2500, self_sufficiency: 54, unserved_kwh: 0, pv_kwh: null, extra: 1 } },
  ];
  const rows = compareRows(runs);
  const row = (k: string) => rows.find((r) => r.kpi === k)!;

  it('gives the difference of each run to the first in % of the first', () => {
    expect(row('total_cost').values).toEqual([2000, 1500, 2500]);
    expect(row('total_cost').diffPct).toEqual([null, -25, 25]);
    expect(row('self_sufficiency').diffPct[1]).toBeCloseTo(25, 10); // 75 / 60 = 1.25
    expect(row('self_sufficiency').diffPct[2]).toBeCloseTo(-10, 10); // 54 / 60 = 0.9
  });

  it('has no % where the first run is 0 or a value is missing', () => {
    expect(row('unserved_kwh').diffPct).toEqual([null, null, null]);
    expect(row('pv_kwh').diffPct).toEqual([null, 0, null]);
    expect(row('extra').values).toEqual([null, null, 1]);
    expect(row('extra').diffPct).toEqual([null, null, null]);
  });

  it('keeps labels and units, falling back to the KPI name', () => {
    expect(rows.map((r) => r.kpi)).toEqual(['total_cost', 'self_sufficiency', 'unserved_kwh', 'pv_kwh', 'extra']);
    expect([row('total_cost').label, row('total_cost').unit]).toEqual(['Total cost', 'ZAR']);
    expect([row('pv_kwh').label, row('pv_kwh').unit]).toEqual(['pv_kwh', '']);
  });

  it('takes a negative first value by its size', () => {
    // a cost of −100 (net export income) going to −50 is a rise of 50 % of 100
    expect(pctDiff(-100, -50)).toBe(50);
    expect(pctDiff(-100, -150)).toBe(-50);
  });

  it('formats signed percentages', () => {
    expect([formatPct(12.345), formatPct(-4), formatPct(0.01), formatPct(null)]).toEqual(['+12.3 %', '−4.0 %', '0.0 %', '–']);
  });

  it('is empty without runs', () => {
    expect(compareRows([])).toEqual([]);
  });
});
