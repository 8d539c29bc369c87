import { Component, ElementRef, OnDestroy, effect, input, viewChild } from '@angular/core';

/** An ECharts chart; the library is loaded on first use, in its own chunk. */
@Component({
  selector: 'app-chart',
  template: `<div #box class="chart" role="img" [attr.aria-label]="label()"></div>`,
})
export class Chart implements OnDestroy {
  readonly option = input.required<any>();
  readonly label = input('chart');
  private box = viewChild.required<ElementRef<HTMLDivElement>>('box');
  private chart: any = null;
  private observer?: ResizeObserver;

  constructor() {
    effect(() => {
      const option = this.option();
      const el = this.box().nativeElement;
      void this.draw(el, option);
    });
  }

  private async draw(el: HTMLDivElement, option: any): Promise<void> {
    if (!this.chart) {
      const echarts = await import('./lib/echarts');
      if (this.chart) return this.chart.setOption(option, true);
      this.chart = echarts.init(el);
      if (typeof ResizeObserver !== 'undefined') {
        this.observer = new ResizeObserver(() => this.chart?.resize());
        this.observer.observe(el);
      }
    }
    this.chart.setOption(option, true);
  }

  ngOnDestroy(): void {
    this.observer?.disconnect();
    this.chart?.dispose();
  }
}
