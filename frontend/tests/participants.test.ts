import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { flushPromises, type VueWrapper } from "@vue/test-utils";
import { DatasetSummarySchema } from "../src/gen/fedmetamal/v1/common_pb";
import {
  ControlService,
  JoinTokenSchema,
  ParticipantSchema,
  type CreateJoinTokenRequest,
  type Participant,
} from "../src/gen/fedmetamal/v1/control_pb";
import ParticipantsView from "../src/views/ParticipantsView.vue";
import { button, loginAs, mountPage, serve, texts } from "./helpers";

const now = Date.now() / 1000;
const JOIN = "fedmetamal join --server grpc.example.org:50051 --token fmm_jt_Zx81 --ca-fingerprint sha256:ab12";

function people(): Participant[] {
  return [
    create(ParticipantSchema, {
      participantId: "p-pend",
      name: "lab-new",
      state: "pending",
      online: true,
      activity: "",
      lastSeenUnix: now - 10,
      enrolledUnix: now - 10,
      platform: "Linux x86_64",
    }),
    create(ParticipantSchema, {
      participantId: "p-ok",
      name: "lab-a",
      state: "approved",
      online: true,
      activity: "training",
      lastSeenUnix: now - 2,
      enrolledUnix: now - 100,
      summary: create(DatasetSummarySchema, {
        nTrain: 900n,
        nUnlabelled: 100n,
        labelCounts: { benign: 600n, malware: 300n },
        familyCounts: { emotet: 50n, trickbot: 30n, qakbot: 15n, zbot: 5n },
      }),
    }),
    create(ParticipantSchema, { participantId: "p-gone", name: "", state: "revoked", online: false, enrolledUnix: now - 1000 }),
  ];
}

interface Calls {
  approve: string[];
  revoke: string[];
  tokens: CreateJoinTokenRequest[];
}

function server(calls: Calls, opts: { failRevoke?: boolean } = {}) {
  let list = people();
  serve(({ service }) => {
    service(ControlService, {
      listParticipants: () => ({ participants: list }),
      approveParticipant: (req) => {
        calls.approve.push(req.participantId);
        list = list.map((p) => (p.participantId === req.participantId ? { ...p, state: "approved" } : p));
        return list.find((p) => p.participantId === req.participantId)!;
      },
      revokeParticipant: (req) => {
        calls.revoke.push(req.participantId);
        if (opts.failRevoke) throw new ConnectError("participant is in a running round", Code.FailedPrecondition);
        list = list.map((p) => (p.participantId === req.participantId ? { ...p, state: "revoked" } : p));
        return list.find((p) => p.participantId === req.participantId)!;
      },
      createJoinToken: (req) => {
        calls.tokens.push(req);
        return create(JoinTokenSchema, { token: "fmm_jt_Zx81", expiresUnix: now + req.ttlS, command: JOIN });
      },
    });
  });
}

function row(w: VueWrapper, id: string) {
  return w.findAll("tbody tr").find((r) => r.text().includes(id))!;
}

describe("Participants page", () => {
  let calls: Calls;
  beforeEach(() => {
    loginAs("admin");
    calls = { approve: [], revoke: [], tokens: [] };
  });
  afterEach(() => vi.restoreAllMocks());

  it("shows each participant's state, presence, activity and data summary in words", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(ParticipantsView, "/participants");
    expect(w.find(".page-head .muted").text()).toBe("3 enrolled · 2 online · 1 pending");
    // newest enrolment first
    expect(texts(w, "tbody tr td:first-child strong")).toEqual(["lab-new", "lab-a", "—"]);

    const pend = row(w, "p-pend");
    const cells = pend.findAll("td");
    expect(cells[1].text()).toBe("pending");
    expect(cells[2].text()).toBe("online");
    expect(cells[3].text()).toBe("idle");
    expect(cells[0].text()).toContain("Linux x86_64");
    expect(pend.text()).toContain("no summary yet");

    const ok = row(w, "p-ok").findAll("td");
    expect(ok[1].text()).toBe("approved");
    expect(ok[3].text()).toBe("training");
    expect(ok[5].text()).toBe((1000).toLocaleString());
    expect(ok[6].text()).toBe("33.3 %");
    expect(ok[7].text()).toBe("emotet 50 %, trickbot 30 %, qakbot 15 % +1 more");

    const gone = row(w, "p-gone").findAll("td");
    expect(gone[1].text()).toBe("revoked");
    expect(gone[2].text()).toBe("offline");
    expect(gone[3].text()).toBe("—");
    expect(gone[4].text()).toBe("never");
  });

  it("approves a pending participant by its id and shows the new state", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(ParticipantsView, "/participants");
    // only the pending participant can be approved; the revoked one has no actions
    expect(w.findAll("button").filter((b) => b.text() === "Approve")).toHaveLength(1);
    expect(row(w, "p-gone").findAll("button")).toHaveLength(0);

    await button(row(w, "p-pend"), "Approve")!.trigger("click");
    await flushPromises();
    expect(calls.approve).toEqual(["p-pend"]);
    expect(row(w, "p-pend").findAll("td")[1].text()).toBe("approved");
    expect(button(row(w, "p-pend"), "Approve")).toBeUndefined();
    expect(calls.revoke).toEqual([]);
  });

  it("revokes only after confirmation", async () => {
    server(calls);
    const confirm = vi.spyOn(window, "confirm").mockReturnValueOnce(false).mockReturnValueOnce(true);
    const { wrapper: w } = await mountPage(ParticipantsView, "/participants");

    await button(row(w, "p-ok"), "Revoke")!.trigger("click");
    await flushPromises();
    expect(confirm).toHaveBeenCalledWith("Revoke lab-a? It can no longer take part in any run.");
    expect(calls.revoke).toEqual([]);
    expect(row(w, "p-ok").findAll("td")[1].text()).toBe("approved");

    await button(row(w, "p-ok"), "Revoke")!.trigger("click");
    await flushPromises();
    expect(calls.revoke).toEqual(["p-ok"]);
    expect(row(w, "p-ok").findAll("td")[1].text()).toBe("revoked");
    expect(button(row(w, "p-ok"), "Revoke")).toBeUndefined();
  });

  it("shows why a revoke was refused", async () => {
    server(calls, { failRevoke: true });
    vi.spyOn(window, "confirm").mockReturnValue(true);
    const { wrapper: w } = await mountPage(ParticipantsView, "/participants");
    await button(row(w, "p-ok"), "Revoke")!.trigger("click");
    await flushPromises();
    expect(w.find('[role="alert"]').text()).toBe("participant is in a running round");
    expect(row(w, "p-ok").findAll("td")[1].text()).toBe("approved");
    expect(button(row(w, "p-ok"), "Revoke")!.attributes("disabled")).toBeUndefined();
  });

  it("creates a join token and shows the exact join command", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(ParticipantsView, "/participants");
    const invite = button(w, "+ Invite participant")!;
    expect(invite.attributes("aria-expanded")).toBe("false");
    expect(w.find("#invite").exists()).toBe(false);
    await invite.trigger("click");
    expect(invite.attributes("aria-expanded")).toBe("true");

    await w.find("#tok-ttl").setValue("2");
    await w.find("#tok-note").setValue("for lab b");
    await w.find("#tok-auto").setValue(true);
    await w.find("#invite").trigger("submit");
    await flushPromises();

    expect(calls.tokens).toHaveLength(1);
    expect(calls.tokens[0]).toMatchObject({ ttlS: 7200, autoApprove: true, note: "for lab b" });
    const cmd = w.find('pre[aria-label="Join command"]');
    expect(cmd.text()).toBe(JOIN);
    expect(document.activeElement).toBe(cmd.element);

    const writeText = vi.fn(() => Promise.resolve());
    vi.stubGlobal("navigator", { ...navigator, clipboard: { writeText } });
    await button(w, "Copy command")!.trigger("click");
    await flushPromises();
    expect(writeText).toHaveBeenCalledWith(JOIN);
    expect(button(w, "Copied ✓")).toBeDefined();
    vi.unstubAllGlobals();
  });

  it("selects the command when the clipboard is blocked", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(ParticipantsView, "/participants");
    await button(w, "+ Invite participant")!.trigger("click");
    await w.find("#invite").trigger("submit");
    await flushPromises();
    vi.stubGlobal("navigator", { ...navigator, clipboard: { writeText: () => Promise.reject(new Error("not allowed")) } });
    await button(w, "Copy command")!.trigger("click");
    await flushPromises();
    expect(window.getSelection()!.toString()).toBe(JOIN);
    expect(w.find("#invite [role=alert]").text()).toMatch(/Ctrl\+C/);
    vi.unstubAllGlobals();
  });

  it("gives a viewer no button that changes anything", async () => {
    loginAs("viewer");
    server(calls);
    const { wrapper: w } = await mountPage(ParticipantsView, "/participants");
    expect(w.findAll("tbody tr")).toHaveLength(3);
    expect(w.findAll("button")).toHaveLength(0);
    expect(w.find("thead").text()).not.toContain("Actions");
  });

  it("explains how to invite someone when nobody has enrolled", async () => {
    serve(({ service }) => service(ControlService, { listParticipants: () => ({}) }));
    const { wrapper: w } = await mountPage(ParticipantsView, "/participants");
    expect(w.find(".empty").text()).toContain("Create a join token with “+ Invite participant”");
    expect(w.find("table").exists()).toBe(false);
  });
});
