/**
 * Inline SVG charts with no dependencies: line charts, grouped bar charts and heatmaps. Every
 * function returns a self-contained `<svg>` string; text is escaped; non-finite values are
 * skipped (a gap in a line) rather than drawn.
 */

/** Escapes text for HTML/SVG content and attribute values. */
export function esc(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * A categorical palette readable on white: every colour has a contrast ratio of at least 3:1
 * against the page (WCAG's threshold for graphics). The first ten are distinct hues (Okabe-Ito
 * without its light orange, sky blue and yellow, plus darker ones); beyond them, golden-angle
 * hue steps at 35% lightness.
 */
export const PALETTE = [
  "#0072b2",
  "#d55e00",
  "#009e73",
  "#cc79a7",
  "#8c6d00",
  "#6a3d9a",
  "#000000",
  "#882255",
  "#667700",
  "#00798c",
] as const;

/** The colour of series `i` (see {@linkcode PALETTE}). */
export function colour(i: number): string {
  if (i < PALETTE.length) return PALETTE[i];
  return `hsl(${((i * 137.508) % 360).toFixed(1)}, 60%, 35%)`;
}

function fmt(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1000 || a < 0.01) return v.toExponential(1);
  return Number(v.toPrecision(3)).toString();
}

/** Round-ish tick values covering [lo, hi]. */
export function ticks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    out.push(Number(t.toPrecision(12)));
  }
  return out;
}

/** One line of a line chart. */
export interface Series {
  /** Legend label and line tooltip. */
  name: string;
  /** [x, y] points; non-finite y leaves a gap. */
  points: [number, number][];
  /** CSS stroke colour; default `colour(i)` for series index i. */
  colour?: string;
  /** Draw the line dashed. */
  dashed?: boolean;
}

/** Options of {@linkcode lineChart}. */
export interface ChartOptions {
  /** Chart title, drawn above the plot. */
  title: string;
  /** X-axis label. */
  xLabel?: string;
  /** Y-axis label. */
  yLabel?: string;
  /** Width in pixels; default 640. */
  width?: number;
  /** Height in pixels; default 300. */
  height?: number;
  /** Log-scale y (positive values only). */
  logY?: boolean;
}

/** A line chart with axes, ticks and a legend. */
export function lineChart(series: Series[], o: ChartOptions): string {
  const W = o.width ?? 640, H = o.height ?? 300;
  const m = { l: 60, r: 150, t: 30, b: 40 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const tf = (y: number) => (o.logY ? Math.log10(y) : y);
  const xs: number[] = [], ys: number[] = [];
  for (const s of series) {
    for (const [x, y] of s.points) {
      if (drawable(x, y, o.logY)) {
        xs.push(x);
        ys.push(tf(y));
      }
    }
  }
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${
      esc(o.title)
    }">`,
    `<text x="${m.l}" y="18" font-size="14" font-weight="bold">${esc(o.title)}</text>`,
  ];
  if (xs.length === 0) {
    parts.push(`<text x="${m.l}" y="${m.t + ph / 2}" font-size="12">no data</text></svg>`);
    return parts.join("");
  }
  const f = chartFrame(xs, ys, { W, H, m, pw, ph, tf });
  parts.push(...chartAxes(f, o, xs.every(Number.isInteger)));
  series.forEach((s, i) => {
    const c = s.colour ?? colour(i);
    parts.push(...seriesLine(f, s, c, o.logY), ...legendEntry(f, s, c, i));
  });
  parts.push("</svg>");
  return parts.join("");
}

/** Whether a point is drawn: finite, and positive on a log scale. */
function drawable(x: number, y: number, logY?: boolean): boolean {
  return Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0);
}

/** The geometry of a line chart: its box, margins, data ranges and the maps onto pixels. */
interface ChartFrame {
  /** Width and height of the whole chart. */
  W: number;
  H: number;
  /** Margins around the plot. */
  m: { l: number; r: number; t: number; b: number };
  /** Width and height of the plot. */
  pw: number;
  ph: number;
  /** Data ranges drawn: x as given, y on the (log) scale, padded. */
  x0: number;
  x1: number;
  y0: number;
  y1: number;
  /** The y scale (log10 with logY). */
  tf: (y: number) => number;
  /** Pixel of a data x, and of a scaled y. */
  sx: (x: number) => number;
  sy: (y: number) => number;
}

/** The frame of the points (xs, scaled ys): ranges widened when flat, y padded by 5%. */
function chartFrame(
  xs: number[],
  ys: number[],
  box: Pick<ChartFrame, "W" | "H" | "m" | "pw" | "ph" | "tf">,
): ChartFrame {
  const { m, pw, ph } = box;
  const x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => m.t + ph - ((y - y0) / (y1 - y0)) * ph;
  return { ...box, x0, x1, y0, y1, sx, sy };
}

/** The plot's border, y grid lines and tick labels, x tick labels, and the axis labels. */
function chartAxes(f: ChartFrame, o: ChartOptions, integerX: boolean): string[] {
  const { m, pw, ph, H, sx, sy } = f;
  const parts = [
    `<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
  ];
  for (const t of ticks(f.y0, f.y1)) {
    const y = sy(t).toFixed(1);
    const label = o.logY ? fmt(10 ** t) : fmt(t);
    parts.push(
      `<line x1="${m.l}" x2="${m.l + pw}" y1="${y}" y2="${y}" stroke="#eee"/>`,
      `<text x="${
        m.l - 6
      }" y="${y}" font-size="10" text-anchor="end" dominant-baseline="middle">${label}</text>`,
    );
  }
  for (const t of ticks(f.x0, f.x1, 8).filter((t) => !integerX || Number.isInteger(t))) {
    const x = sx(t).toFixed(1);
    parts.push(
      `<text x="${x}" y="${m.t + ph + 14}" font-size="10" text-anchor="middle">${fmt(t)}</text>`,
    );
  }
  if (o.xLabel) {
    parts.push(
      `<text x="${m.l + pw / 2}" y="${H - 6}" font-size="11" text-anchor="middle">${
        esc(o.xLabel)
      }</text>`,
    );
  }
  if (o.yLabel) {
    parts.push(
      `<text x="14" y="${
        m.t + ph / 2
      }" font-size="11" text-anchor="middle" transform="rotate(-90 14 ${m.t + ph / 2})">${
        esc(o.yLabel)
      }</text>`,
    );
  }
  return parts;
}

/** A series' line (broken at points not drawn) in colour `c`, and its dots up to 60 points. */
function seriesLine(f: ChartFrame, s: Series, c: string, logY?: boolean): string[] {
  let d = "";
  let pen = false;
  const dots: string[] = [];
  for (const [x, y] of s.points) {
    if (!drawable(x, y, logY)) {
      pen = false;
      continue;
    }
    const px = f.sx(x).toFixed(1), py = f.sy(f.tf(y)).toFixed(1);
    d += `${pen ? "L" : "M"}${px},${py}`;
    pen = true;
    dots.push(`<circle cx="${px}" cy="${py}" r="2" fill="${c}"/>`);
  }
  if (!d) return [];
  const line = `<path d="${d}" fill="none" stroke="${c}" stroke-width="1.5"${
    s.dashed ? ' stroke-dasharray="4 3"' : ""
  }><title>${esc(s.name)}</title></path>`;
  return dots.length <= 60 ? [line, ...dots] : [line];
}

/** The legend entry of series `i` (a line sample and its name), while it fits the height. */
function legendEntry(f: ChartFrame, s: Series, c: string, i: number): string[] {
  const { W, H, m } = f;
  const ly = m.t + 6 + i * 14;
  if (ly >= H - 10) return [];
  return [
    `<line x1="${W - m.r + 10}" x2="${
      W - m.r + 28
    }" y1="${ly}" y2="${ly}" stroke="${c}" stroke-width="2"${
      s.dashed ? ' stroke-dasharray="4 3"' : ""
    }/>`,
    `<text x="${W - m.r + 32}" y="${ly}" font-size="10" dominant-baseline="middle">${
      esc(s.name)
    }</text>`,
  ];
}

/** A grouped bar chart: one group per category, one bar per series, values in [0, max]. */
export function barChart(
  categories: string[],
  series: { name: string; values: number[]; colour?: string }[],
  o: ChartOptions & { max?: number },
): string {
  const W = o.width ?? Math.max(480, 80 + categories.length * (8 + 10 * series.length) + 150);
  const H = o.height ?? 280;
  const m = { l: 50, r: 150, t: 30, b: 50 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const vals = series.flatMap((s) => s.values.filter(Number.isFinite));
  const max = o.max ?? Math.max(1e-12, ...vals);
  const groupW = pw / Math.max(1, categories.length);
  const barW = Math.max(1, (groupW * 0.8) / Math.max(1, series.length));
  const sy = (v: number) => m.t + ph - (Math.max(0, Math.min(v, max)) / max) * ph;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${
      esc(o.title)
    }">`,
    `<text x="${m.l}" y="18" font-size="14" font-weight="bold">${esc(o.title)}</text>`,
    `<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
  ];
  for (const t of ticks(0, max)) {
    const y = sy(t).toFixed(1);
    parts.push(
      `<line x1="${m.l}" x2="${m.l + pw}" y1="${y}" y2="${y}" stroke="#eee"/>`,
      `<text x="${m.l - 6}" y="${y}" font-size="10" text-anchor="end" dominant-baseline="middle">${
        fmt(t)
      }</text>`,
    );
  }
  const labelEvery = Math.ceil(categories.length / 40);
  categories.forEach((cat, g) => {
    const gx = m.l + g * groupW + groupW * 0.1;
    series.forEach((s, k) => {
      const v = s.values[g];
      if (!Number.isFinite(v)) return;
      const y = sy(v);
      parts.push(
        `<rect x="${(gx + k * barW).toFixed(1)}" y="${y.toFixed(1)}" width="${
          barW.toFixed(1)
        }" height="${(m.t + ph - y).toFixed(1)}" fill="${s.colour ?? colour(k)}"><title>${
          esc(`${s.name} ${cat}: ${fmt(v)}`)
        }</title></rect>`,
      );
    });
    if (g % labelEvery === 0) {
      parts.push(
        `<text x="${(m.l + (g + 0.5) * groupW).toFixed(1)}" y="${
          m.t + ph + 14
        }" font-size="10" text-anchor="middle">${esc(cat)}</text>`,
      );
    }
  });
  if (o.xLabel) {
    parts.push(
      `<text x="${m.l + pw / 2}" y="${H - 8}" font-size="11" text-anchor="middle">${
        esc(o.xLabel)
      }</text>`,
    );
  }
  series.forEach((s, i) => {
    const ly = m.t + 6 + i * 14;
    parts.push(
      `<rect x="${W - m.r + 10}" y="${ly - 5}" width="12" height="10" fill="${
        s.colour ?? colour(i)
      }"/>`,
      `<text x="${W - m.r + 28}" y="${ly}" font-size="10" dominant-baseline="middle">${
        esc(s.name)
      }</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("");
}

/** A heatmap of a matrix (rows = true class, columns = predicted), row-normalised colours. */
export function heatmap(
  matrix: number[][],
  labels: string[],
  o: { title: string; cell?: number },
): string {
  const n = matrix.length;
  const cell = o.cell ?? Math.max(4, Math.min(36, Math.floor(480 / Math.max(1, n))));
  const m = { l: 60, t: 40 };
  const W = m.l + n * cell + 20, H = m.t + n * cell + 40;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${
      esc(o.title)
    }">`,
    `<text x="${m.l}" y="18" font-size="14" font-weight="bold">${esc(o.title)}</text>`,
    `<text x="${m.l + (n * cell) / 2}" y="34" font-size="10" text-anchor="middle">predicted</text>`,
    `<text x="12" y="${
      m.t + (n * cell) / 2
    }" font-size="10" text-anchor="middle" transform="rotate(-90 12 ${
      m.t + (n * cell) / 2
    })">true</text>`,
  ];
  const showText = cell >= 22;
  matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    row.forEach((v, j) => {
      const f = v / total;
      const light = Math.round(100 - 70 * f);
      const x = m.l + j * cell, y = m.t + i * cell;
      parts.push(
        `<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="hsl(215, 70%, ${light}%)"><title>${
          esc(`true ${labels[i]}, predicted ${labels[j]}: ${v} (${(100 * f).toFixed(1)}%)`)
        }</title></rect>`,
      );
      if (showText && v > 0) {
        parts.push(
          `<text x="${x + cell / 2}" y="${
            y + cell / 2
          }" font-size="9" text-anchor="middle" dominant-baseline="middle" fill="${
            light < 60 ? "#fff" : "#000"
          }">${v}</text>`,
        );
      }
    });
  });
  const every = Math.ceil(n / 25);
  for (let i = 0; i < n; i += every) {
    parts.push(
      `<text x="${m.l - 4}" y="${
        m.t + i * cell + cell / 2
      }" font-size="9" text-anchor="end" dominant-baseline="middle">${esc(labels[i])}</text>`,
      `<text x="${m.l + i * cell + cell / 2}" y="${
        m.t + n * cell + 12
      }" font-size="9" text-anchor="middle">${esc(labels[i])}</text>`,
    );
  }
  parts.push("</svg>");
  return parts.join("");
}
