import { describe, expect, it } from 'vitest';
import { escapeHtml, href, html, machineHref } from '../../../src/server/ui/html.js';
import { barChart } from '../../../src/server/ui/svg-chart.js';

describe('fleet view HTML escaping', () => {
  it('escapes the five characters that matter in text and quoted attributes', () => {
    expect(escapeHtml(`<script>alert("x")</script> & 'y'`)).toBe(
      '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;',
    );
  });

  it('escapes every interpolated value, in text and in attributes, and nests templates unescaped once', () => {
    const bot = '<script>alert(1)</script>';
    const attr = '" onmouseover="alert(1)';
    // Through an alias: prettier reformats templates tagged `html` as HTML, which would add whitespace here.
    const tag = html;
    const inner = tag`<b>${bot}</b>`;
    const out = tag`<td title="${attr}">${bot}</td>${inner}`.toString();
    expect(out).toBe(
      '<td title="&quot; onmouseover=&quot;alert(1)">&lt;script&gt;alert(1)&lt;/script&gt;</td>' +
        '<b>&lt;script&gt;alert(1)&lt;/script&gt;</b>',
    );
    expect(out).not.toContain('<script>');
  });

  it('renders arrays, numbers and leaves out null, undefined and false', () => {
    expect(html`${['<a>', 1, null, undefined, false, html`<i></i>`]}`.toString()).toBe('&lt;a&gt;1<i></i>');
  });

  it('a plain string that looks like markup is still escaped (only html`` makes safe markup)', () => {
    const notSafe = { toString: () => '<img src=x onerror=alert(1)>' } as unknown as string;
    expect(html`${String(notSafe)}`.toString()).toBe('&lt;img src=x onerror=alert(1)&gt;');
  });

  it('builds links from encoded parts only', () => {
    expect(machineHref('../../v1/admin/lock?x=1')).toBe('/ui/machine/..%2F..%2Fv1%2Fadmin%2Flock%3Fx%3D1');
    expect(href('/ui/', { bot: 'a&b', q: '', page: 2 })).toBe('/ui/?bot=a%26b&page=2');
  });

  it('chart labels and titles are escaped too', () => {
    const svg = barChart({
      name: '<x>',
      tone: 'chart-ok',
      bars: [{ value: 3, title: '</title><script>alert(1)</script>', label: '<b>' }],
    }).toString();
    expect(svg).not.toContain('<script>');
    expect(svg).toContain('&lt;/title&gt;&lt;script&gt;');
    expect(svg).toContain('&lt;b&gt;');
  });
});
