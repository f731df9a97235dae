/**
 * A dependency-free SVG grouped bar chart (cold path): one group per case,
 * one bar per series, value labels, a legend. Opens in any browser.
 *
 * @module
 */

/** One group of bars. */
export interface BarGroup {
  label: string;
  /** One value per series, in series order (NaN = missing). */
  values: number[];
}

/** Chart input. */
export interface BarChart {
  title: string;
  unit: string;
  series: string[];
  groups: BarGroup[];
}

const COLORS = ["#9aa5b1", "#2f80ed", "#27ae60", "#eb5757", "#f2994a"];

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Render `c` as a standalone SVG document. */
export function renderBarChart(c: BarChart): string {
  const barW = 28;
  const gap = 6;
  const groupGap = 34;
  const left = 70;
  const top = 60;
  const plotH = 300;
  const groupW = c.series.length * (barW + gap) - gap;
  const width = Math.max(480, left + c.groups.length * (groupW + groupGap) + 20);
  const height = top + plotH + 90;
  const max = Math.max(1e-9, ...c.groups.flatMap((g) => g.values.filter((v) => Number.isFinite(v))));
  const scale = plotH / (max * 1.12);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">`,
  );
  out.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  out.push(`<text x="${left}" y="24" font-size="16" font-weight="600">${esc(c.title)}</text>`);
  // Axis and grid.
  const ticks = 5;
  for (let i = 0; i <= ticks; i++) {
    const v = ((max * 1.12) / ticks) * i;
    const y = top + plotH - v * scale;
    out.push(`<line x1="${left}" x2="${width - 10}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#eee"/>`);
    out.push(`<text x="${left - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end" fill="#555">${v.toFixed(v < 10 ? 2 : 1)}</text>`);
  }
  out.push(
    `<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#333">${esc(c.unit)}</text>`,
  );
  c.groups.forEach((g, gi) => {
    const x0 = left + 10 + gi * (groupW + groupGap);
    g.values.forEach((v, si) => {
      if (!Number.isFinite(v)) return;
      const h = v * scale;
      const x = x0 + si * (barW + gap);
      const y = top + plotH - h;
      out.push(
        `<rect x="${x}" y="${y.toFixed(1)}" width="${barW}" height="${h.toFixed(1)}" fill="${COLORS[si % COLORS.length]}"><title>${esc(`${g.label} ${c.series[si]}: ${v}`)}</title></rect>`,
      );
      out.push(`<text x="${x + barW / 2}" y="${(y - 4).toFixed(1)}" text-anchor="middle" font-size="10">${v.toFixed(v < 10 ? 2 : 1)}</text>`);
    });
    out.push(`<text x="${x0 + groupW / 2}" y="${top + plotH + 18}" text-anchor="middle">${esc(g.label)}</text>`);
  });
  c.series.forEach((s, si) => {
    const x = left + si * 130;
    const y = top + plotH + 50;
    out.push(`<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${COLORS[si % COLORS.length]}"/>`);
    out.push(`<text x="${x + 18}" y="${y}">${esc(s)}</text>`);
  });
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
