// One Connect transport for the whole app: binary protobuf, same-origin cookies, and the
// double-submit CSRF header the server checks on every call except Login and WhoAmI.
import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ControlService } from "../gen/fedmetamal/v1/control_pb";
import { DashboardService, DetectService } from "../gen/fedmetamal/v1/dashboard_pb";

export const CSRF_COOKIE = "fmm_csrf";
export const CSRF_HEADER = "x-csrf-token";

/** The value of one cookie from a `document.cookie` string ("" when absent). */
export function readCookie(name: string, cookies: string): string {
  for (const part of cookies.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      return decodeURIComponent(part.slice(eq + 1).trim());
    }
  }
  return "";
}

/** Copies the CSRF cookie into the header; the cookie source is injectable for tests. */
export function csrfInterceptor(cookies: () => string = () => document.cookie): Interceptor {
  return (next) => async (req) => {
    const token = readCookie(CSRF_COOKIE, cookies());
    if (token) req.header.set(CSRF_HEADER, token);
    return next(req);
  };
}

type Listener = () => void;
const unauthenticatedListeners = new Set<Listener>();

/** Called when any call answers UNAUTHENTICATED (the session expired or was never there). */
export function onUnauthenticated(fn: Listener): () => void {
  unauthenticatedListeners.add(fn);
  return () => unauthenticatedListeners.delete(fn);
}

export function notifyUnauthenticated(): void {
  for (const fn of unauthenticatedListeners) fn();
}

/** Reports UNAUTHENTICATED answers of unary calls to the session store. */
export const sessionInterceptor: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (err) {
    if (ConnectError.from(err).code === Code.Unauthenticated) notifyUnauthenticated();
    throw err;
  }
};

export function makeTransport(baseUrl: string): Transport {
  return createConnectTransport({
    baseUrl,
    useBinaryFormat: true,
    interceptors: [csrfInterceptor(), sessionInterceptor],
  });
}

export interface Api {
  control: Client<typeof ControlService>;
  dashboard: Client<typeof DashboardService>;
  detect: Client<typeof DetectService>;
}

function clients(transport: Transport): Api {
  return {
    control: createClient(ControlService, transport),
    dashboard: createClient(DashboardService, transport),
    detect: createClient(DetectService, transport),
  };
}

let current: Api | null = null;

/** The app's clients (created on first use against window.location.origin). */
export function api(): Api {
  if (!current) current = clients(makeTransport(window.location.origin));
  return current;
}

/** Points the app at another transport (tests use createRouterTransport). */
export function useTransport(transport: Transport): Api {
  current = clients(transport);
  return current;
}

/** A sentence for the page: what went wrong and, where known, what to do. */
export function errorMessage(err: unknown): string {
  const e = ConnectError.from(err);
  const raw = e.rawMessage || e.message;
  if (/fetch|network|load failed|Failed to fetch/i.test(raw) && e.code !== Code.Unauthenticated) {
    return "Cannot reach the FedMetaMal server. Is `fedmetamal serve` still running?";
  }
  switch (e.code) {
    case Code.Unauthenticated:
      return "Your session has ended. Please log in again.";
    case Code.PermissionDenied:
      return raw || "Your account may not do this (viewer role).";
    case Code.Unavailable:
      return `The server is unavailable: ${raw}`;
    case Code.Unimplemented:
      return `The server does not support this call (${raw}). Is it an older version?`;
    case Code.ResourceExhausted:
      return raw;
    default:
      return raw;
  }
}
