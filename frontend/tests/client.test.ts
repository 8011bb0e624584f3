import { describe, expect, it, vi } from "vitest";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { ControlService } from "../src/gen/fedmetamal/v1/control_pb";
import { csrfInterceptor, errorMessage, onUnauthenticated, readCookie, sessionInterceptor } from "../src/api/client";

describe("readCookie", () => {
  it("finds a cookie among others and decodes it", () => {
    expect(readCookie("fmm_csrf", "a=1; fmm_csrf=abc%3D%3D; b=2")).toBe("abc==");
    expect(readCookie("fmm_csrf", "xfmm_csrf=no; fmm_csrf2=no")).toBe("");
    expect(readCookie("fmm_csrf", "")).toBe("");
  });
});

function transportSeeing(headers: (string | null)[], interceptors = [csrfInterceptor(() => "x=1; fmm_csrf=tok123")]) {
  return createRouterTransport(
    ({ service }) => {
      service(ControlService, {
        getServerInfo(_req, ctx) {
          headers.push(ctx.requestHeader.get("x-csrf-token"));
          return { version: "1.0" };
        },
      });
    },
    { transport: { interceptors } },
  );
}

describe("CSRF interceptor", () => {
  it("copies the fmm_csrf cookie into x-csrf-token", async () => {
    const seen: (string | null)[] = [];
    await createClient(ControlService, transportSeeing(seen)).getServerInfo({});
    expect(seen).toEqual(["tok123"]);
  });

  it("sends no header when there is no cookie (not logged in)", async () => {
    const seen: (string | null)[] = [];
    await createClient(ControlService, transportSeeing(seen, [csrfInterceptor(() => "other=1")])).getServerInfo({});
    expect(seen).toEqual([null]);
  });

  it("reads the cookie at call time, not when the transport is made", async () => {
    let jar = "fmm_csrf=first";
    const seen: (string | null)[] = [];
    const client = createClient(ControlService, transportSeeing(seen, [csrfInterceptor(() => jar)]));
    await client.getServerInfo({});
    jar = "fmm_csrf=second";
    await client.getServerInfo({});
    expect(seen).toEqual(["first", "second"]);
  });
});

describe("session interceptor", () => {
  it("reports UNAUTHENTICATED answers and rethrows them", async () => {
    const hook = vi.fn();
    const off = onUnauthenticated(hook);
    const transport = createRouterTransport(
      ({ service }) => {
        service(ControlService, {
          getServerInfo() {
            throw new ConnectError("no session", Code.Unauthenticated);
          },
          listRuns() {
            throw new ConnectError("boom", Code.Internal);
          },
        });
      },
      { transport: { interceptors: [sessionInterceptor] } },
    );
    const client = createClient(ControlService, transport);
    await expect(client.getServerInfo({})).rejects.toMatchObject({ code: Code.Unauthenticated });
    await expect(client.listRuns({})).rejects.toMatchObject({ code: Code.Internal });
    expect(hook).toHaveBeenCalledTimes(1);
    off();
  });
});

describe("errorMessage", () => {
  it("explains an unreachable server", () => {
    expect(errorMessage(new TypeError("Failed to fetch"))).toMatch(/Cannot reach the FedMetaMal server/);
  });
  it("passes the server's message through", () => {
    expect(errorMessage(new ConnectError("run r-1 not found", Code.NotFound))).toBe("run r-1 not found");
  });
});
