import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { enableAutoUnmount, mount } from "@vue/test-utils";
import { nextTick } from "vue";
import type { ChartOptions } from "chart.js";
import ChartCanvas from "../src/components/ChartCanvas.vue";
import { PALETTE } from "../src/lib/chartsetup";
import { theme } from "../src/stores/theme";
import { FakeChart } from "./fakechart";

vi.mock("../src/lib/chartsetup", async (importOriginal) => (await import("./fakechart")).chartsetupMock(importOriginal));

enableAutoUnmount(afterEach);

type ZoomOptions = {
  zoom: { wheel: { enabled: boolean }; mode: string; onZoomComplete: () => void };
  pan: { enabled: boolean; mode: string; onPanComplete: () => void };
};

function zoomOf(options: ChartOptions): ZoomOptions | undefined {
  return (options.plugins as Record<string, unknown>).zoom as ZoomOptions | undefined;
}

const loss = { label: "loss", data: [{ x: 1, y: 0.9 }, { x: 2, y: 0.7 }] };
const acc = { label: "accuracy", data: [{ x: 1, y: 0.6 }, { x: 2, y: 0.7 }] };

function mountChart(props: Record<string, unknown> = {}) {
  return mount(ChartCanvas, { props: { datasets: [loss, acc], chartLabel: "Loss per round", xTitle: "round", ...props }, attachTo: document.body });
}

describe("ChartCanvas", () => {
  beforeEach(() => {
    FakeChart.instances = [];
    theme.value = "light";
  });
  afterEach(() => {
    theme.value = "light";
  });

  it("draws one chart with the given series, labelled for screen readers", () => {
    const w = mountChart({ height: 320 });
    expect(FakeChart.instances).toHaveLength(1);
    const chart = FakeChart.instances[0];
    expect(chart.canvas).toBe(w.find("canvas").element);
    expect(w.find("canvas").attributes("role")).toBe("img");
    expect(w.find("canvas").attributes("aria-label")).toBe("Loss per round");
    expect(w.find(".chart-box").attributes("style")).toContain("height: 320px");
    expect(chart.type).toBe("line");
    expect(chart.data.datasets.map((d) => [d.label, d.data, d.borderColor, (d as { showLine?: boolean }).showLine])).toEqual([
      ["loss", loss.data, PALETTE[0], true],
      ["accuracy", acc.data, PALETTE[1], true],
    ]);
    expect(chart.options.animation).toBe(false);
    const x = chart.options.scales!.x as { type: string; title: { text: string } };
    expect([x.type, x.title.text]).toEqual(["linear", "round"]);
    expect(zoomOf(chart.options)!.zoom.mode).toBe("x");
    expect(zoomOf(chart.options)!.pan.enabled).toBe(true);
    // no zoom to reset yet
    expect(w.find("button").exists()).toBe(false);
  });

  it("updates the data in place, so a zoomed view stays where the user put it", async () => {
    const w = mountChart();
    const chart = FakeChart.instances[0];
    const options = chart.options;
    const lossSet = chart.data.datasets[0];
    // what chartjs-plugin-zoom does on a wheel zoom
    Object.assign(chart.options.scales!.x!, { min: 2, max: 5 });
    zoomOf(chart.options)!.zoom.onZoomComplete();

    const grown = { label: "loss", data: [...loss.data, { x: 3, y: 0.5 }] };
    const f1 = { label: "f1", data: [{ x: 3, y: 0.4 }] };
    await w.setProps({ datasets: [grown, f1] });

    expect(FakeChart.instances).toHaveLength(1);
    expect(chart.data.datasets).toHaveLength(2);
    expect(chart.data.datasets[0]).toBe(lossSet);
    expect(lossSet.data).toEqual(grown.data);
    expect(chart.data.datasets[1].label).toBe("f1");
    expect(chart.updates).toEqual(["none"]);
    expect(chart.options).toBe(options);
    expect([chart.options.scales!.x!.min, chart.options.scales!.x!.max]).toEqual([2, 5]);
    expect(chart.zoomResets).toBe(0);
  });

  it("offers to reset a zoom or pan, and forgets the zoom when reset", async () => {
    const w = mountChart();
    const chart = FakeChart.instances[0];
    zoomOf(chart.options)!.pan.onPanComplete();
    await nextTick();
    const reset = w.find("button");
    expect(reset.text()).toBe("Reset zoom");
    await reset.trigger("click");
    expect(chart.zoomResets).toBe(1);
    expect(w.find("button").exists()).toBe(false);
  });

  it("keeps the zoomed range when the theme changes the colours", async () => {
    mountChart();
    const chart = FakeChart.instances[0];
    Object.assign(chart.options.scales!.x!, { min: 3, max: 8 });
    zoomOf(chart.options)!.zoom.onZoomComplete();
    const before = chart.options;
    theme.value = "dark";
    await vi.waitFor(() => expect(chart.options).not.toBe(before));
    expect([chart.options.scales!.x!.min, chart.options.scales!.x!.max]).toEqual([3, 8]);
    expect(chart.updates.at(-1)).toBe("none");
  });

  it("restyles an unzoomed chart to its full range", async () => {
    mountChart({ yMin: 0, yMax: 1 });
    const chart = FakeChart.instances[0];
    const before = chart.options;
    theme.value = "dark";
    await vi.waitFor(() => expect(chart.options).not.toBe(before));
    expect(chart.options.scales!.x!.min).toBeUndefined();
    expect([chart.options.scales!.y!.min, chart.options.scales!.y!.max]).toEqual([0, 1]);
  });

  it("draws stacked bars with category labels, and updates the labels", async () => {
    const w = mountChart({
      type: "bar",
      stacked: true,
      zoom: false,
      labels: ["p-a", "p-b"],
      datasets: [
        { label: "benign", data: [40, 30], stack: "rows" },
        { label: "malware", data: [60, 10], stack: "rows", color: "#D55E00" },
      ],
    });
    const chart = FakeChart.instances[0];
    expect(chart.type).toBe("bar");
    expect(chart.data.labels).toEqual(["p-a", "p-b"]);
    expect(chart.data.datasets.map((d) => d.backgroundColor)).toEqual([PALETTE[0], "#D55E00"]);
    expect((chart.options.scales!.x as { type: string; stacked: boolean }).stacked).toBe(true);
    expect(zoomOf(chart.options)).toBeUndefined();
    await w.setProps({ labels: ["p-a", "p-b", "p-c"], datasets: [{ label: "benign", data: [40, 30, 5] }] });
    expect(chart.data.labels).toEqual(["p-a", "p-b", "p-c"]);
    expect(chart.data.datasets.map((d) => d.label)).toEqual(["benign"]);
  });

  it("exports the chart as a PNG data URL and frees it on unmount", () => {
    const w = mountChart();
    const chart = FakeChart.instances[0];
    expect((w.vm as unknown as { toBase64Image(): string }).toBase64Image()).toBe("data:image/png;base64,iVBORw0KGgo=");
    w.unmount();
    expect(chart.destroyed).toBe(true);
  });
});
