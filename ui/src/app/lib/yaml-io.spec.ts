import { parse as parse11 } from 'yaml';
import { homeToYaml, yamlToHome } from './yaml-io';

/** The Cape Town example's shape, with every string a YAML 1.1 reader would take for something else. */
const HOME = {
  apiVersion: 'hometwin.io/v1alpha1',
  kind: 'Home',
  metadata: { name: 'cape-town' },
  spec: {
    location: { latitude: -33.92, longitude: 18.42, altitude_m: 15, timezone: 'Africa/Johannesburg' },
    clock: { start: '2025-01-01T00:00:00', duration: '365d', step_s: 60, seed: 7 },
    elements: [
      { name: 'sun', kind: 'sun' },
      { name: 'battery', kind: 'battery', config: { capacity_kwh: 10.0, soc_min: 0.1, soc_initial: 0.8 } },
      {
        name: 'grid', kind: 'grid',
        config: {
          currency: 'ZAR', import_limit_kw: 13.8,
          tariff: { type: 'time_of_use', default_price_per_kwh: 3.2, periods: [{ start: '06:00', end: '09:00', days: ['mon', 'tue'], price_per_kwh: 6.6 }] },
          outages: { daily: [{ start: '18:00', end: '20:30' }] },
        },
      },
      { name: 'oven', kind: 'oven', enabled: false, config: { power_w: 2400, on: false, timers: [{ start: '18:00', end: '19:00' }] } },
      { name: 'tv', kind: 'tv', config: { label: 'yes', note: 'null', code: '0x1F', ratio: '1e3' } },
    ],
  },
};

describe('YAML import/export', () => {
  it('round-trips a home exactly', () => {
    const text = homeToYaml(HOME);
    expect(yamlToHome(text)).toEqual(HOME);
  });

  it('writes what a YAML 1.1 reader (PyYAML) reads back as the same strings and keys', () => {
    const text = homeToYaml(HOME);
    const as11 = parse11(text, { version: '1.1' });
    expect(as11).toEqual(HOME);
    // the traps, spelled out: sexagesimal 18:00 = 1080, a timestamp, the boolean key `on`
    expect(parse11('t: 18:00\nd: 2025-01-01T00:00:00\non: 1', { version: '1.1' }).t).toBe(1080);
    expect(text).toContain('start: "18:00"');
    expect(text).toContain('start: "2025-01-01T00:00:00"');
    expect(text).toContain('"on": false');
  });

  it('reads the bundled example style: flow mappings, comments, unquoted dates', () => {
    const home = yamlToHome(`# a comment
apiVersion: hometwin.io/v1alpha1
kind: Home
metadata: {name: minimal}
spec:
  location: {latitude: 52.52, longitude: 13.40, timezone: Europe/Berlin}
  clock: {start: 2025-06-01T00:00:00, duration: 7d, step_s: 60, seed: 1}
  elements:
    - {name: sun, kind: sun}
    - name: grid
      kind: grid
      config: {tariff: {type: flat, price_per_kwh: 0.35}}
`);
    expect(home.spec.clock.start).toBe('2025-06-01T00:00:00');
    expect(home.spec.location.longitude).toBe(13.4);
    expect(home.spec.elements.map((e: any) => e.name)).toEqual(['sun', 'grid']);
    expect(home.spec.elements[1].config.tariff.price_per_kwh).toBe(0.35);
  });

  it('refuses text that is not a Home, with a one-line reason', () => {
    expect(() => yamlToHome('a: [1, 2')).toThrow(/^not valid YAML/);
    expect(() => yamlToHome('- 1\n- 2')).toThrow(/not a Home document/);
    expect(() => yamlToHome('kind: Pod\nspec: {}')).toThrow(/kind is "Pod"/);
    expect(() => yamlToHome('kind: Home\nkind: Home\nspec: {a: 1}')).toThrow(/not valid YAML/);
  });
});
