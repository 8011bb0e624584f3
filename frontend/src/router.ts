import { createRouter, createWebHistory, type RouteRecordRaw } from "vue-router";
import { checkSession, session } from "./stores/session";

const routes: RouteRecordRaw[] = [
  { path: "/login", name: "login", component: () => import("./views/LoginView.vue"), meta: { title: "Log in", public: true } },
  { path: "/", name: "overview", component: () => import("./views/OverviewView.vue"), meta: { title: "Overview" } },
  { path: "/participants", name: "participants", component: () => import("./views/ParticipantsView.vue"), meta: { title: "Participants" } },
  { path: "/runs/new", name: "new-run", component: () => import("./views/NewRunView.vue"), meta: { title: "New run" } },
  { path: "/runs/:id", name: "run", component: () => import("./views/RunView.vue"), props: true, meta: { title: "Run" } },
  { path: "/compare", name: "compare", component: () => import("./views/CompareView.vue"), meta: { title: "Compare" } },
  { path: "/models", name: "model", component: () => import("./views/ModelView.vue"), meta: { title: "Model" } },
  { path: "/detect", name: "detect", component: () => import("./views/DetectView.vue"), meta: { title: "Detect" } },
  { path: "/users", name: "users", component: () => import("./views/UsersView.vue"), meta: { title: "Users" } },
  { path: "/:rest(.*)*", name: "not-found", component: () => import("./views/NotFoundView.vue"), meta: { title: "Not found", public: true } },
];

export const router = createRouter({ history: createWebHistory(), routes });

router.beforeEach(async (to) => {
  if (!session.checked) await checkSession();
  if (!to.meta.public && !session.loggedIn) {
    return { name: "login", query: to.fullPath !== "/" ? { next: to.fullPath } : {} };
  }
  if (to.name === "login" && session.loggedIn) return { name: "overview" };
  return true;
});

router.afterEach((to) => {
  document.title = `${String(to.meta.title ?? "")} · FedMetaMal`;
});
