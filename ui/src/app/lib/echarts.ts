/** The parts of ECharts the UI draws with (tree-shaken; loaded lazily by the chart component). */
import * as echarts from 'echarts/core';
import { BarChart, LineChart } from 'echarts/charts';
import { DataZoomComponent, GridComponent, LegendComponent, TitleComponent, TooltipComponent } from 'echarts/components';
import { SVGRenderer } from 'echarts/renderers';

echarts.use([LineChart, BarChart, GridComponent, TooltipComponent, LegendComponent, TitleComponent, DataZoomComponent, SVGRenderer]);

export function init(el: HTMLElement): echarts.ECharts {
  return echarts.init(el, undefined, { renderer: 'svg' });
}
