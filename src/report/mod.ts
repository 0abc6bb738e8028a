/**
 * Run reports: self-contained HTML with inline SVG charts.
 *
 * @module
 */
export * from "./svg.ts";
export * from "./html.ts";
export * from "./provenance.ts";
