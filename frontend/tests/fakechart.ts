// A stand-in for Chart.js (jsdom has no canvas): it keeps the config it was given and records
// updates, so tests can check what a page draws and how ChartCanvas updates it.
import type { ChartConfiguration, ChartData, ChartOptions } from "chart.js";

export class FakeChart {
  static instances: FakeChart[] = [];
  data: ChartData;
  options: ChartOptions;
  readonly type: string;
  readonly updates: (string | undefined)[] = [];
  destroyed = false;
  zoomResets = 0;

  constructor(
    readonly canvas: HTMLCanvasElement,
    config: ChartConfiguration,
  ) {
    this.type = config.type;
    this.data = config.data;
    this.options = config.options ?? {};
    FakeChart.instances.push(this);
  }

  update(mode?: string): void {
    this.updates.push(mode);
  }

  destroy(): void {
    this.destroyed = true;
  }

  resetZoom(): void {
    this.zoomResets += 1;
  }

  toBase64Image(): string {
    return "data:image/png;base64,iVBORw0KGgo=";
  }

  /** The live charts (not destroyed), oldest first. */
  static live(): FakeChart[] {
    return FakeChart.instances.filter((c) => !c.destroyed);
  }
}

/** The factory for `vi.mock("../src/lib/chartsetup", ...)`: the real helpers, the fake Chart. */
export async function chartsetupMock(importOriginal: () => Promise<unknown>): Promise<Record<string, unknown>> {
  const real = (await importOriginal()) as Record<string, unknown>;
  return { ...real, registerCharts: () => FakeChart };
}
