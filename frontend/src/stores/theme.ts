// Light/dark theme: follows prefers-color-scheme until the user picks one (kept in localStorage).
import { ref } from "vue";

export type Theme = "light" | "dark";
const KEY = "fmm-theme";

function systemTheme(): Theme {
  return typeof window !== "undefined" && window.matchMedia?.("(prefers-color-scheme: dark)").matches
    ? "dark"
    : "light";
}

function stored(): Theme | null {
  try {
    const v = localStorage.getItem(KEY);
    return v === "light" || v === "dark" ? v : null;
  } catch {
    return null;
  }
}

export const theme = ref<Theme>(stored() ?? systemTheme());

export function applyTheme(t: Theme): void {
  theme.value = t;
  document.documentElement.dataset.theme = t;
}

export function toggleTheme(): void {
  const next: Theme = theme.value === "dark" ? "light" : "dark";
  try {
    localStorage.setItem(KEY, next);
  } catch {
    /* private mode: the choice lasts for this page only */
  }
  applyTheme(next);
}

export function initTheme(): void {
  applyTheme(theme.value);
  window.matchMedia?.("(prefers-color-scheme: dark)").addEventListener?.("change", () => {
    if (!stored()) applyTheme(systemTheme());
  });
}
