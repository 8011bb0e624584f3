// v-scroll-region="'Label'": a box that scrolls (a wide table, a long log) must be reachable
// with the keyboard (WCAG 2.1.1), or its hidden part is out of reach without a mouse. The
// directive makes the box a focusable, named region only while it actually overflows, so
// boxes that fit add no extra tab stop.
import type { Directive } from "vue";

interface ScrollState {
  label: string;
  observer: ResizeObserver | null;
}
type ScrollBox = HTMLElement & { __fmmScroll?: ScrollState };

/** Whether the element's content is larger than its box (it can scroll). */
export function overflows(el: HTMLElement): boolean {
  return el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1;
}

const OWN = ["tabindex", "role", "aria-label"] as const;
const LISTS = new Set(["OL", "UL", "TABLE"]);

/**
 * Focusable named region while the box overflows; a plain box otherwise. Attributes the
 * template set itself (a list's role or label) are kept: only the directive's own are removed.
 */
export function updateScrollRegion(el: HTMLElement, label: string): void {
  const set = (name: (typeof OWN)[number], value: string) => {
    if (el.hasAttribute(name) && el.dataset[`fmmOwn${name.replace("-", "")}`] !== "1") return;
    el.setAttribute(name, value);
    el.dataset[`fmmOwn${name.replace("-", "")}`] = "1";
  };
  if (overflows(el)) {
    set("tabindex", "0");
    // A list or table keeps its own role (its items need it); a plain box becomes a region.
    if (!LISTS.has(el.tagName)) set("role", "region");
    set("aria-label", label);
  } else {
    for (const name of OWN) {
      const key = `fmmOwn${name.replace("-", "")}`;
      if (el.dataset[key] === "1") {
        el.removeAttribute(name);
        delete el.dataset[key];
      }
    }
  }
}

function refresh(box: ScrollBox): void {
  if (box.__fmmScroll) updateScrollRegion(box, box.__fmmScroll.label);
}

export const vScrollRegion: Directive<HTMLElement, string | undefined> = {
  mounted(el, binding) {
    const box = el as ScrollBox;
    const observer = typeof ResizeObserver === "function" ? new ResizeObserver(() => refresh(box)) : null;
    box.__fmmScroll = { label: binding.value || "Scrollable content", observer };
    observer?.observe(el);
    // Rows arriving grow the content, not the box: watch the first child too.
    if (el.firstElementChild) observer?.observe(el.firstElementChild);
    refresh(box);
  },
  updated(el, binding) {
    const box = el as ScrollBox;
    if (box.__fmmScroll) box.__fmmScroll.label = binding.value || "Scrollable content";
    refresh(box);
  },
  unmounted(el) {
    (el as ScrollBox).__fmmScroll?.observer?.disconnect();
  },
};
