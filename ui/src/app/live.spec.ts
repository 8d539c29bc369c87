import { diagramHeight, formatPower, layout } from './live.component';

describe('live flow diagram', () => {
  it('writes power in W below 1 kW and in kW above, by its size (the edge shows the direction)', () => {
    expect([formatPower(0), formatPower(-250.4), formatPower(999.6), formatPower(2400), formatPower(-13800), formatPower(null)])
      .toEqual(['0 W', '250 W', '1000 W', '2.40 kW', '13.80 kW', '–']);
  });

  it('places every load on the right, 70 apart, inside the drawing', () => {
    const loads = ['oven', 'tv', 'kettle', 'lights', 'fridge', 'geyser', 'house', 'dryer'].map((name) => ({ name, icon: '' }));
    const nodes = layout(loads);
    const h = diagramHeight(loads.length);
    expect(nodes.map((n) => n.key)).toEqual(['pv', 'grid', 'battery', ...loads.map((l) => `el.${l.name}`)]);
    const ys = nodes.slice(3).map((n) => n.y);
    expect(ys.slice(1).map((y, i) => y - ys[i])).toEqual(Array(7).fill(70));
    expect(Math.min(...nodes.map((n) => n.y))).toBeGreaterThanOrEqual(26);
    expect(Math.max(...nodes.map((n) => n.y))).toBeLessThanOrEqual(h - 26);
    expect(h).toBe(600);
    expect(diagramHeight(1)).toBe(470);
  });
});
