import { TestBed } from '@angular/core/testing';
import { fieldsFromSchema, parseInput, rangeText, setAt, splitDescription } from './schema-form';
import { SchemaForm } from '../schema-form.component';

/** A config schema in the shape pydantic writes (trimmed from the battery and grid kinds). */
const SCHEMA = {
  title: 'BatteryConfig',
  type: 'object',
  additionalProperties: false,
  properties: {
    capacity_kwh: { type: 'number', default: 10.0, exclusiveMinimum: 0, maximum: 10000, description: '[kWh] usable capacity' },
    soc_min: { type: 'number', default: 0.1, minimum: 0, exclusiveMaximum: 1, description: '[0-1] lowest SoC the BMS allows' },
    cycles: { type: 'integer', minimum: 1, description: 'rated cycles' },
    chemistry: { type: 'string', enum: ['lfp', 'nmc'], default: 'lfp', description: 'cell chemistry' },
    import_limit_kw: { anyOf: [{ type: 'number', exclusiveMinimum: 0 }, { type: 'null' }], default: null, description: '[kW] import limit (None = unlimited)' },
    on: { type: 'boolean', default: false, description: 'manual switch' },
    timers: { type: 'array', items: { $ref: '#/$defs/Timer' }, description: 'daily run windows' },
    source: { $ref: '#/$defs/Source', description: 'where the weather comes from' },
  },
  required: ['cycles'],
  $defs: {
    Timer: { type: 'object', properties: { start: { type: 'string' }, end: { type: 'string' } }, required: ['start', 'end'] },
    Source: {
      type: 'object',
      properties: { cloud_cover_mean: { type: 'number', minimum: 0, maximum: 1, default: 0.5, description: '[0-1] mean cloud cover' } },
    },
  },
};

describe('form generation from a JSON Schema', () => {
  const fields = fieldsFromSchema(SCHEMA);
  const byKey = Object.fromEntries(fields.map((f) => [f.key, f]));

  it('makes one field per property, in the schema order', () => {
    expect(fields.map((f) => f.key)).toEqual(['capacity_kwh', 'soc_min', 'cycles', 'chemistry', 'import_limit_kw', 'on', 'timers', 'source']);
  });

  it('reads unit, range, default and required from the schema', () => {
    const cap = byKey['capacity_kwh'];
    expect(cap.kind).toBe('number');
    expect(cap.unit).toBe('kWh');
    expect(cap.help).toBe('usable capacity');
    expect(cap.label).toBe('Capacity');
    expect(byKey['soc_min'].label).toBe('Soc min');
    expect(cap.default).toBe(10);
    expect([cap.min, cap.exclusiveMin, cap.max, cap.exclusiveMax]).toEqual([0, true, 10000, false]);
    expect(rangeText(cap)).toBe('> 0, ≤ 10000');
    expect(rangeText(byKey['soc_min'])).toBe('≥ 0, < 1');
    expect(byKey['cycles'].kind).toBe('integer');
    expect(byKey['cycles'].required).toBe(true);
    expect(cap.required).toBe(false);
  });

  it('unwraps a nullable number, an enum and a boolean', () => {
    const lim = byKey['import_limit_kw'];
    expect([lim.kind, lim.nullable, lim.unit, lim.min, lim.exclusiveMin]).toEqual(['number', true, 'kW', 0, true]);
    expect(byKey['chemistry'].kind).toBe('enum');
    expect(byKey['chemistry'].options).toEqual(['lfp', 'nmc']);
    expect(byKey['on'].kind).toBe('boolean');
  });

  it('follows $ref into a nested group and leaves lists to YAML', () => {
    const src = byKey['source'];
    expect(src.kind).toBe('group');
    expect(src.help).toBe('where the weather comes from');
    expect(src.children!.map((c) => [c.key, c.path.join('.'), c.unit, c.max])).toEqual([['cloud_cover_mean', 'source.cloud_cover_mean', '0-1', 1]]);
    expect(byKey['timers'].kind).toBe('yaml');
  });

  it('sets and clears nested values without touching the rest', () => {
    const v = { capacity_kwh: 10, source: { cloud_cover_mean: 0.3 } };
    expect(setAt(v, ['source', 'cloud_cover_mean'], 0.4)).toEqual({ capacity_kwh: 10, source: { cloud_cover_mean: 0.4 } });
    expect(setAt(v, ['source', 'cloud_cover_mean'], undefined)).toEqual({ capacity_kwh: 10 });
    expect(v.source.cloud_cover_mean).toBe(0.3);
    expect(parseInput(byKey['capacity_kwh'], ' 12.5 ')).toBe(12.5);
    expect(parseInput(byKey['capacity_kwh'], '')).toBeUndefined();
    expect(splitDescription('plain')).toEqual({ unit: '', help: 'plain' });
  });

  it('renders labelled inputs with ranges and the server message beside its field', async () => {
    TestBed.configureTestingModule({ imports: [SchemaForm] });
    const fixture = TestBed.createComponent(SchemaForm);
    fixture.componentRef.setInput('fields', fields);
    fixture.componentRef.setInput('value', { capacity_kwh: -1 });
    fixture.componentRef.setInput('prefix', 'elements.3.config');
    fixture.componentRef.setInput('idPrefix', 'el-3');
    fixture.componentRef.setInput('errors', new Map([['elements.3.config.capacity_kwh', ['Input should be greater than 0']]]));
    const emitted: any[] = [];
    fixture.componentInstance.valueChange.subscribe((v) => emitted.push(v));
    fixture.detectChanges();
    await fixture.whenStable();
    const el: HTMLElement = fixture.nativeElement;

    const cap = el.querySelector<HTMLInputElement>('#el-3-capacity_kwh')!;
    expect(cap.type).toBe('number');
    expect(cap.value).toBe('-1');
    expect(cap.getAttribute('max')).toBe('10000');
    expect(cap.getAttribute('aria-invalid')).toBe('true');
    expect(el.querySelector('label[for="el-3-capacity_kwh"]')!.textContent!.trim()).toBe('Capacity [kWh]');
    const box = cap.closest('.field')!;
    expect(box.querySelector('.error')!.textContent).toBe('Input should be greater than 0');
    expect(box.querySelector('.help')!.textContent).toContain('(> 0, ≤ 10000)');
    // the other fields carry no message
    expect(el.querySelectorAll('.error').length).toBe(1);
    // every control has a label
    for (const c of Array.from(el.querySelectorAll('input, select, textarea'))) {
      expect(el.querySelector(`label[for="${c.id}"]`), c.id).not.toBeNull();
    }
    expect(el.querySelector<HTMLInputElement>('#el-3-source-cloud_cover_mean')!.placeholder).toBe('default 0.5');
    expect(el.querySelector('#el-3-timers')!.tagName).toBe('TEXTAREA');

    cap.value = '12';
    cap.dispatchEvent(new Event('input'));
    expect(emitted.at(-1)).toEqual({ capacity_kwh: 12 });
    const timers = el.querySelector<HTMLTextAreaElement>('#el-3-timers')!;
    timers.value = '- {start: "18:00", end: "19:00"}';
    timers.dispatchEvent(new Event('change'));
    expect(emitted.at(-1)).toEqual({ capacity_kwh: -1, timers: [{ start: '18:00', end: '19:00' }] });
  });
});
