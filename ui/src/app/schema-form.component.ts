import { Component, input, output } from '@angular/core';
import { NgTemplateOutlet } from '@angular/common';
import { parse, stringify } from 'yaml';
import { FieldDef, Json, getAt, parseInput, rangeText, setAt } from './lib/schema-form';

/** The inputs of one element's config, generated from its JSON Schema; server messages beside each field. */
@Component({
  selector: 'app-schema-form',
  imports: [NgTemplateOutlet],
  template: `
    <ng-template #fieldsTpl let-fields>
      @for (f of fields; track f.key) {
        @if (f.kind === 'group') {
          <fieldset class="group">
            <legend>{{ f.label }}</legend>
            @if (f.help) { <small class="help">{{ f.help }}</small> }
            <ng-container *ngTemplateOutlet="fieldsTpl; context: { $implicit: f.children }" />
          </fieldset>
        } @else {
          <div class="field" [class.invalid]="messages(f).length > 0" [attr.data-field]="f.path.join('.')">
            <label [for]="id(f)">{{ f.label }}@if (f.unit) {<span class="unit"> [{{ f.unit }}]</span>}</label>
            @switch (f.kind) {
              @case ('boolean') {
                <input type="checkbox" [id]="id(f)" [checked]="checked(f)" (change)="set(f, $any($event.target).checked)"
                       [attr.aria-describedby]="id(f) + '-help'" [attr.aria-invalid]="messages(f).length > 0" />
              }
              @case ('enum') {
                <select [id]="id(f)" (change)="set(f, $any($event.target).value || undefined)"
                        [attr.aria-describedby]="id(f) + '-help'" [attr.aria-invalid]="messages(f).length > 0">
                  <option value="" [selected]="current(f) === undefined">(default{{ f.default !== undefined ? ': ' + f.default : '' }})</option>
                  @for (o of f.options; track o) {
                    <option [value]="o" [selected]="current(f) === o">{{ o }}</option>
                  }
                </select>
              }
              @case ('yaml') {
                <textarea [id]="id(f)" rows="3" spellcheck="false" [value]="yamlText(f)" [placeholder]="yamlDefault(f)"
                          (change)="setYaml(f, $any($event.target).value)"
                          [attr.aria-describedby]="id(f) + '-help'" [attr.aria-invalid]="messages(f).length > 0"></textarea>
              }
              @default {
                <input [type]="f.kind === 'string' ? 'text' : 'number'" [id]="id(f)" [value]="text(f)"
                       [placeholder]="f.default != null ? 'default ' + f.default : ''" step="any"
                       [attr.min]="f.min ?? null" [attr.max]="f.max ?? null"
                       (input)="set(f, parse(f, $any($event.target).value))"
                       [attr.aria-describedby]="id(f) + '-help'" [attr.aria-invalid]="messages(f).length > 0" />
              }
            }
            <small class="help" [id]="id(f) + '-help'">{{ f.help }}@if (range(f)) { ({{ range(f) }})}@if (f.kind === 'yaml') { — YAML}</small>
            @for (m of messages(f); track m) {
              <span class="error" role="alert">{{ m }}</span>
            }
          </div>
        }
      }
    </ng-template>
    <ng-container *ngTemplateOutlet="fieldsTpl; context: { $implicit: fields() }" />
  `,
})
export class SchemaForm {
  readonly fields = input.required<FieldDef[]>();
  readonly value = input<Json>({});
  /** error-key prefix, e.g. `elements.2.config` */
  readonly prefix = input('');
  /** unique id prefix for the inputs */
  readonly idPrefix = input('f');
  readonly errors = input<Map<string, string[]>>(new Map());
  readonly valueChange = output<Json>();
  private localErrors = new Map<string, string>();
  readonly parse = parseInput;
  readonly range = rangeText;

  id(f: FieldDef): string {
    return `${this.idPrefix()}-${f.path.join('-')}`;
  }

  current(f: FieldDef): any {
    return getAt(this.value(), f.path);
  }

  text(f: FieldDef): string {
    const v = this.current(f);
    return v == null ? '' : String(v);
  }

  checked(f: FieldDef): boolean {
    const v = this.current(f);
    return v === undefined ? f.default === true : v === true;
  }

  yamlText(f: FieldDef): string {
    const v = this.current(f);
    return v === undefined ? '' : stringify(v, { lineWidth: 0 }).trimEnd();
  }

  yamlDefault(f: FieldDef): string {
    return f.default === undefined || f.default === null ? '' : 'default: ' + JSON.stringify(f.default);
  }

  messages(f: FieldDef): string[] {
    const key = [this.prefix(), ...f.path].filter((p) => p !== '').join('.');
    const local = this.localErrors.get(key);
    return [...(local ? [local] : []), ...(this.errors().get(key) ?? [])];
  }

  set(f: FieldDef, v: unknown): void {
    this.valueChange.emit(setAt(this.value() ?? {}, f.path, v));
  }

  setYaml(f: FieldDef, text: string): void {
    const key = [this.prefix(), ...f.path].filter((p) => p !== '').join('.');
    if (!text.trim()) {
      this.localErrors.delete(key);
      this.set(f, undefined);
      return;
    }
    try {
      const v = parse(text);
      this.localErrors.delete(key);
      this.set(f, v);
    } catch (e: any) {
      this.localErrors.set(key, `not valid YAML: ${String(e?.message ?? e).split('\n')[0]}`);
      this.valueChange.emit(this.value());
    }
  }
}
