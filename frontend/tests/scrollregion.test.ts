import { describe, expect, it } from "vitest";
import { mount } from "@vue/test-utils";
import { defineComponent, h, withDirectives } from "vue";
import { updateScrollRegion, vScrollRegion } from "../src/directives/scrollRegion";

/** jsdom does no layout: give the element the sizes a browser would measure. */
function sized(el: HTMLElement, scroll: [number, number], client: [number, number]): HTMLElement {
  Object.defineProperty(el, "scrollWidth", { configurable: true, get: () => scroll[0] });
  Object.defineProperty(el, "scrollHeight", { configurable: true, get: () => scroll[1] });
  Object.defineProperty(el, "clientWidth", { configurable: true, get: () => client[0] });
  Object.defineProperty(el, "clientHeight", { configurable: true, get: () => client[1] });
  return el;
}

describe("v-scroll-region", () => {
  it("makes an overflowing box a focusable, named region", () => {
    const el = sized(document.createElement("div"), [900, 100], [300, 100]);
    updateScrollRegion(el, "Rounds table");
    expect(el.tabIndex).toBe(0);
    expect(el.getAttribute("role")).toBe("region");
    expect(el.getAttribute("aria-label")).toBe("Rounds table");
  });

  it("adds no tab stop to a box whose content fits, and removes it when the content shrinks", () => {
    const el = sized(document.createElement("div"), [300, 100], [300, 100]);
    updateScrollRegion(el, "x");
    expect(el.hasAttribute("tabindex")).toBe(false);
    expect(el.hasAttribute("role")).toBe(false);
    sized(el, [301, 400], [300, 100]);
    updateScrollRegion(el, "x");
    expect(el.getAttribute("tabindex")).toBe("0");
    sized(el, [300, 100], [300, 100]);
    updateScrollRegion(el, "x");
    expect(el.hasAttribute("tabindex")).toBe(false);
    expect(el.hasAttribute("aria-label")).toBe(false);
  });

  it("follows the bound label when it changes", async () => {
    const Box = defineComponent({
      props: { label: { type: String, required: true } },
      setup(props) {
        return () => withDirectives(h("div", { class: "box" }, [h("table")]), [[vScrollRegion, props.label]]);
      },
    });
    const w = mount(Box, { props: { label: "first" } });
    const el = sized(w.get(".box").element as HTMLElement, [800, 10], [100, 10]);
    await w.setProps({ label: "second" });
    expect(el.getAttribute("aria-label")).toBe("second");
    expect(el.tabIndex).toBe(0);
    w.unmount();
  });
});

describe("v-scroll-region on an element with its own attributes", () => {
  it("keeps the template's own role and label, adding only the tab stop", () => {
    const el = sized(document.createElement("ol"), [100, 900], [100, 300]);
    el.setAttribute("aria-label", "Run events");
    updateScrollRegion(el, "other");
    expect(el.getAttribute("aria-label")).toBe("Run events");
    expect(el.getAttribute("tabindex")).toBe("0");
    expect(el.hasAttribute("role")).toBe(false); // its items stay list items
    sized(el, [100, 100], [100, 300]);
    updateScrollRegion(el, "other");
    expect(el.getAttribute("aria-label")).toBe("Run events");
    expect(el.hasAttribute("tabindex")).toBe(false);
  });
});
