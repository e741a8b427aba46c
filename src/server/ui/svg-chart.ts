/**
 * Bar charts as inline SVG, drawn on the server (issue #18): no chart library, no script, and
 * nothing the CSP has to allow — colours come from ui.css classes (no style attributes). Every
 * label goes through the `html` template (./html.ts), numbers are rounded before they are
 * written, so data can only ever be text in a <title> or <text>.
 */
import { html, type Html } from './html.js';

export interface Bar {
  value: number;
  /** Hover text (SVG <title>): what the bar is, e.g. "04:12 UTC: 37 renewals". */
  title: string;
  /** Label under the bar (histograms); time series label only the ends. */
  label?: string;
}

export interface BarChartSpec {
  /** Accessible name and heading. */
  name: string;
  bars: readonly Bar[];
  /** CSS class of the bars: chart-ok, chart-refused, chart-failed, chart-age. */
  tone: string;
  width?: number;
  height?: number;
  /** Text under the left and right ends (time series). */
  ends?: [string, string];
}

const r1 = (n: number): number => Math.round(n * 10) / 10;

export function barChart(s: BarChartSpec): Html {
  const width = s.width ?? 360;
  const height = s.height ?? 120;
  const top = 16;
  const bottom = s.ends || s.bars.some((b) => b.label) ? 18 : 4;
  const plotH = height - top - bottom;
  const n = Math.max(1, s.bars.length);
  const peak = Math.max(0, ...s.bars.map((b) => b.value));
  const max = Math.max(1, peak);
  const step = width / n;
  const gap = step > 6 ? Math.min(4, step * 0.2) : 0;
  const total = s.bars.reduce((a, b) => a + b.value, 0);
  // Integer coordinates, the colour on the group, and no element for an empty bar: a 60-bar
  // chart stays a few KB. Empty bars still count in the x positions.
  const rects = s.bars.map((b, i) => {
    if (b.value <= 0) return '';
    const h = Math.max(1, Math.round((b.value / max) * plotH));
    const x = Math.round(i * step + gap / 2);
    const w = Math.max(1, Math.round(step - gap));
    return html`<rect x="${x}" y="${top + plotH - h}" width="${w}" height="${h}"><title>${b.title}</title></rect>`;
  });
  const labels = s.bars.map((b, i) =>
    b.label
      ? html`<text class="chart-label" x="${r1(i * step + step / 2)}" y="${height - 4}" text-anchor="middle"
          >${b.label}</text
        >`
      : '',
  );
  const ends = s.ends
    ? html`<text class="chart-label" x="0" y="${height - 4}">${s.ends[0]}</text
        ><text class="chart-label" x="${width}" y="${height - 4}" text-anchor="end">${s.ends[1]}</text>`
    : '';
  return html`<figure class="chart">
    <figcaption>${s.name} <span class="muted">(total ${total}, peak ${peak})</span></figcaption>
    <svg
      xmlns="http://www.w3.org/2000/svg"
      role="img"
      aria-label="${s.name}"
      viewBox="0 0 ${width} ${height}"
      width="${width}"
      height="${height}"
    >
      <line class="chart-axis" x1="0" y1="${top + plotH + 0.5}" x2="${width}" y2="${top + plotH + 0.5}"></line>
      <g class="${s.tone}">${rects}</g>
      ${labels}${ends}
    </svg>
  </figure>`;
}
