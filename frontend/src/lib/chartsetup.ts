// Chart.js with only the parts the dashboard uses, plus zoom/pan, and theme-aware colours.
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  LogarithmicScale,
  PointElement,
  ScatterController,
  Tooltip,
  type Plugin,
} from "chart.js";
import zoomPlugin from "chartjs-plugin-zoom";

/** Fills the canvas with the card colour so exported PNGs are readable in both themes. */
const background: Plugin = {
  id: "fmmBackground",
  beforeDraw(chart) {
    const ctx = chart.ctx;
    ctx.save();
    ctx.globalCompositeOperation = "destination-over";
    ctx.fillStyle = cssVar("--card", "#ffffff");
    ctx.fillRect(0, 0, chart.width, chart.height);
    ctx.restore();
  },
};

let registered = false;
export function registerCharts(): typeof Chart {
  if (!registered) {
    Chart.register(
      LineController,
      LineElement,
      PointElement,
      BarController,
      BarElement,
      ScatterController,
      CategoryScale,
      LinearScale,
      LogarithmicScale,
      Tooltip,
      Legend,
      Filler,
      zoomPlugin,
      background,
    );
    registered = true;
  }
  return Chart;
}

export function cssVar(name: string, fallback: string): string {
  if (typeof document === "undefined") return fallback;
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

/** Colour-blind-friendly palette (Okabe-Ito), readable on light and dark cards. */
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8f7f00", "#999999"];

export function color(i: number): string {
  return PALETTE[i % PALETTE.length];
}
