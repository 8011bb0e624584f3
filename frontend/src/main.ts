import { createApp } from "vue";
import App from "./App.vue";
import { router } from "./router";
import { events, session } from "./stores/session";
import { initTheme } from "./stores/theme";
import "./style.css";

initTheme();
createApp(App).use(router).mount("#app");

// Close the stream when the tab goes away (frees the connection), reopen when it comes back
// from the back/forward cache; it resumes after the last seq seen.
window.addEventListener("pagehide", () => events.stop());
window.addEventListener("pageshow", (ev) => {
  if (ev.persisted && session.loggedIn) void events.start();
});
