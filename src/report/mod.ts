/**
 * Run reports: self-contained HTML with inline SVG charts.
 *
 * @module
 */
export * from "./svg.ts";
export * from "./html.ts";
export type { RunConfigBase, RunRecord } from "./summary.ts";
export * from "./provenance.ts";
