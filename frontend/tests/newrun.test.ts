import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { flushPromises, type VueWrapper } from "@vue/test-utils";
import { ControlService, ParticipantSchema, RunSchema, type CreateRunRequest } from "../src/gen/fedmetamal/v1/control_pb";
import {
  AlgorithmInfoSchema,
  ConfigSchemaSchema,
  DashboardService,
  FieldErrorSchema,
  TemplateSchema,
  ValidateConfigReplySchema,
  type SaveTemplateRequest,
  type Template,
  type ValidateConfigRequest,
} from "../src/gen/fedmetamal/v1/dashboard_pb";
import NewRunView from "../src/views/NewRunView.vue";
import { button, loginAs, mountPage, serve, texts } from "./helpers";

// A cut-down RunConfig schema with the shape pydantic gives it ($refs into $defs).
const SCHEMA = {
  $defs: {
    Dataset: { type: "object", properties: { source: { type: "string", default: "synthetic", title: "Source" } } },
    Partition: {
      type: "object",
      properties: {
        clients: { type: "integer", minimum: 1, default: 20, title: "Clients" },
        scheme: { type: "string", enum: ["iid", "dirichlet"], default: "iid", title: "Scheme" },
      },
    },
    Algorithm: {
      type: "object",
      properties: {
        name: { type: "string", default: "fedavg", title: "Name" },
        params: { type: "object", title: "Params" },
        server_lr: { type: "number", exclusiveMinimum: 0, default: 1, title: "Server Lr" },
      },
    },
    Training: {
      type: "object",
      properties: {
        rounds: { type: "integer", minimum: 1, default: 30, title: "Rounds" },
        client_lr: { type: "number", exclusiveMinimum: 0, default: 0.1, title: "Client Lr" },
      },
    },
    Network: { type: "object", properties: { min_clients: { type: "integer", minimum: 1, default: 2, title: "Min Clients" } } },
  },
  type: "object",
  properties: {
    dataset: { $ref: "#/$defs/Dataset" },
    partition: { $ref: "#/$defs/Partition" },
    algorithm: { $ref: "#/$defs/Algorithm" },
    training: { $ref: "#/$defs/Training" },
    network: { $ref: "#/$defs/Network" },
    seed: { type: "integer", default: 0, title: "Seed" },
  },
};
const DEFAULTS = {
  dataset: { source: "synthetic" },
  partition: { clients: 20, scheme: "iid" },
  algorithm: { name: "fedavg", params: {}, server_lr: 1 },
  training: { rounds: 30, client_lr: 0.1 },
  network: { min_clients: 2 },
  seed: 0,
};
const FEDPROX_PARAMS = { type: "object", properties: { mu: { type: "number", minimum: 0, default: 0.01, title: "Mu" } } };

interface Calls {
  validate: ValidateConfigRequest[];
  create: CreateRunRequest[];
  save: SaveTemplateRequest[];
}

function server(calls: Calls, opts: { errors?: { path: string; message: string }[]; templates?: Template[]; createFails?: boolean } = {}) {
  serve(({ service }) => {
    service(DashboardService, {
      getConfigSchema: () =>
        create(ConfigSchemaSchema, {
          jsonSchema: JSON.stringify(SCHEMA),
          defaultsJson: JSON.stringify(DEFAULTS),
          datasets: ["synthetic", "pe-headers"],
          algorithms: [
            create(AlgorithmInfoSchema, { name: "fedavg", summary: "weighted averaging", reference: "McMahan et al. 2017", paramsSchemaJson: "{}" }),
            create(AlgorithmInfoSchema, { name: "fedprox", summary: "proximal term", paramsSchemaJson: JSON.stringify(FEDPROX_PARAMS) }),
          ],
        }),
      listTemplates: () => ({ templates: opts.templates ?? [] }),
      validateConfig: (req) => {
        calls.validate.push(req);
        const errors = (opts.errors ?? []).map((e) => create(FieldErrorSchema, e));
        return create(ValidateConfigReplySchema, { valid: errors.length === 0, errors });
      },
      saveTemplate: (req) => {
        calls.save.push(req);
        return create(TemplateSchema, { name: req.name, configJson: req.configJson, createdUnix: 1700000000, createdBy: "admin" });
      },
    });
    service(ControlService, {
      listParticipants: () => ({
        participants: [
          create(ParticipantSchema, { participantId: "p-a", name: "lab-a", state: "approved", online: true }),
          create(ParticipantSchema, { participantId: "p-b", name: "", state: "approved", online: false }),
          create(ParticipantSchema, { participantId: "p-c", name: "lab-c", state: "pending", online: true }),
        ],
      }),
      createRun: (req) => {
        calls.create.push(req);
        if (opts.createFails) throw new ConnectError("a run named fedprox-1 exists already", Code.AlreadyExists);
        return create(RunSchema, { runId: "r-42", name: req.name, state: "running" });
      },
    });
  });
}

function value(w: VueWrapper, selector: string): string {
  return (w.find(selector).element as HTMLInputElement).value;
}

/** Lets the form's 400 ms validation debounce run, and its reply arrive. */
async function settle(): Promise<void> {
  await vi.advanceTimersByTimeAsync(450);
  await flushPromises();
}

describe("New run page", () => {
  let calls: Calls;
  beforeEach(() => {
    loginAs("admin");
    calls = { validate: [], create: [], save: [] };
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
  });
  afterEach(() => vi.useRealTimers());

  it("builds the form from the server's schema and defaults", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(NewRunView, "/runs/new");
    expect(value(w, "#f-training-rounds")).toBe("30");
    expect(value(w, "#f-training-client_lr")).toBe("0.1");
    expect(texts(w, "#f-dataset-source option")).toEqual(["synthetic", "pe-headers"]);
    expect(texts(w, "#f-partition-scheme option")).toEqual(["iid", "dirichlet"]);
    // The client count comes from the participants choice, not a schema field.
    expect(w.find("#f-partition-clients").exists()).toBe(false);
    expect(value(w, "#sim-count")).toBe("10");
    // network settings are for real participants only; seed is under "Advanced settings"
    expect(w.find("#f-network-min_clients").exists()).toBe(false);
    expect(w.find("details #f-seed").exists()).toBe(true);
    expect(value(w, "#algo-name")).toBe("fedavg");
    expect(w.find("#algo-help").text()).toBe("weighted averaging (McMahan et al. 2017)");
    expect(w.text()).toContain("This algorithm has no extra parameters.");
    expect(texts(w, "#tpl-select option")).toEqual(["no templates yet"]);
    expect(w.find(".banner").exists()).toBe(false);
    // every control on the page has a label
    for (const el of w.findAll("input, select, textarea")) {
      expect(w.find(`label[for="${el.attributes("id")}"]`).exists(), el.attributes("id")).toBe(true);
    }
  });

  it("checks each change with ValidateConfig and shows the problems next to their fields", async () => {
    server(calls, {
      errors: [
        { path: "training.client_lr", message: "Input should be greater than 0" },
        { path: "", message: "simulated runs need at least 2 clients for secure aggregation" },
      ],
    });
    const { wrapper: w } = await mountPage(NewRunView, "/runs/new");
    await w.find("#f-training-client_lr").setValue("0");
    await w.find("#f-training-rounds").setValue("5");
    // debounced: only one call, with the whole config as the form holds it
    expect(calls.validate).toHaveLength(0);
    await settle();
    expect(calls.validate).toHaveLength(1);
    expect(calls.validate[0].simulated).toBe(true);
    const sent = JSON.parse(calls.validate[0].configJson);
    expect(sent.training).toEqual({ rounds: 5, client_lr: 0 });
    expect(sent.partition.clients).toBe(10);

    expect(w.find("#f-training-client_lr-err").text()).toBe("Input should be greater than 0");
    expect(w.find("#f-training-client_lr").attributes("aria-invalid")).toBe("true");
    expect(w.find("#f-training-rounds-err").exists()).toBe(false);
    expect(w.find(".page-head .pill").text()).toBe("2 problem(s)");
    // a problem with no field of its own is listed below the form
    expect(texts(w, ".banner.bad li")).toEqual(["configuration: simulated runs need at least 2 clients for secure aggregation"]);
    expect(button(w, "Start run")!.attributes("disabled")).toBeDefined();
  });

  it("checks the defaults as soon as the form has loaded", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(NewRunView, "/runs/new");
    expect(w.find(".page-head .pill").exists()).toBe(false);
    await settle();
    expect(calls.validate).toHaveLength(1);
    expect(JSON.parse(calls.validate[0].configJson).training).toEqual({ rounds: 30, client_lr: 0.1 });
    expect(w.find(".page-head .pill").text()).toBe("configuration valid");
  });

  it("says when the configuration is valid", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(NewRunView, "/runs/new");
    await w.find("#f-partition-scheme").setValue("dirichlet");
    await settle();
    expect(JSON.parse(calls.validate[0].configJson).partition.scheme).toBe("dirichlet");
    expect(w.find(".page-head .pill").text()).toBe("configuration valid");
    expect(button(w, "Start run")!.attributes("disabled")).toBeUndefined();
  });

  it("starts a simulated run with the config the form holds and opens its page", async () => {
    server(calls);
    const { wrapper: w, router } = await mountPage(NewRunView, "/runs/new");
    await w.find("#run-name").setValue("  fedprox-dirichlet ");
    await w.find("#sim-count").setValue("4");
    await w.find("#f-training-rounds").setValue("12");
    await w.find("#algo-name").setValue("fedprox");
    expect(value(w, "#f-algorithm-params-mu")).toBe("0.01");
    await w.find("#f-algorithm-params-mu").setValue("0.1");
    await settle();
    await w.find("form").trigger("submit");
    await flushPromises();

    expect(calls.create).toHaveLength(1);
    const req = calls.create[0];
    expect(req).toMatchObject({ name: "fedprox-dirichlet", start: true, simulatedParticipants: 4, participantIds: [] });
    expect(JSON.parse(req.configJson)).toEqual({
      ...DEFAULTS,
      partition: { clients: 4, scheme: "iid" },
      algorithm: { name: "fedprox", params: { mu: 0.1 }, server_lr: 1 },
      training: { rounds: 12, client_lr: 0.1 },
    });
    expect(router.currentRoute.value.path).toBe("/runs/r-42");
  });

  it("runs on chosen approved participants instead of simulated ones", async () => {
    server(calls);
    const { wrapper: w, router } = await mountPage(NewRunView, "/runs/new");
    await w.find("#mode-real").setValue(true);
    expect(w.find("#sim-count").exists()).toBe(false);
    // only approved participants can be picked, with their presence in words
    expect(texts(w, '[aria-label="Approved participants"] li')).toEqual(["lab-a online", "p-b offline"]);
    expect(w.find("#f-network-min_clients").exists()).toBe(true);
    expect(w.find("#f-dataset-source").exists()).toBe(false);
    expect(button(w, "Start run")!.attributes("disabled")).toBeDefined();
    await settle();
    expect(calls.validate.at(-1)!.simulated).toBe(false);

    await w.find("#pick-p-b").setValue(true);
    expect(button(w, "Start run")!.attributes("disabled")).toBeUndefined();
    await w.find("form").trigger("submit");
    await flushPromises();
    expect(calls.create).toHaveLength(1);
    expect(calls.create[0]).toMatchObject({ participantIds: ["p-b"], simulatedParticipants: 0, start: true });
    expect(router.currentRoute.value.path).toBe("/runs/r-42");
  });

  it("keeps the user on the form when the run cannot be created", async () => {
    server(calls, { createFails: true });
    const { wrapper: w, router } = await mountPage(NewRunView, "/runs/new");
    await w.find("form").trigger("submit");
    await flushPromises();
    expect(w.find(".card .banner.bad").text()).toBe("a run named fedprox-1 exists already");
    expect(router.currentRoute.value.path).toBe("/runs/new");
    expect(button(w, "Start run")!.attributes("disabled")).toBeUndefined();
  });

  it("saves the form as a template", async () => {
    server(calls);
    const { wrapper: w } = await mountPage(NewRunView, "/runs/new");
    expect(button(w, "Save as template")!.attributes("disabled")).toBeDefined();
    await w.find("#f-training-rounds").setValue("7");
    await w.find("#tpl-name").setValue(" quick ");
    await button(w, "Save as template")!.trigger("click");
    await flushPromises();
    expect(calls.save).toHaveLength(1);
    expect(calls.save[0].name).toBe("quick");
    expect(JSON.parse(calls.save[0].configJson).training.rounds).toBe(7);
    expect(w.find('p[role="status"]').text()).toBe("Saved template “quick”.");
    expect(texts(w, "#tpl-select option")).toEqual(["choose…", "quick"]);
  });

  it("loads a template over the defaults", async () => {
    const tpl = create(TemplateSchema, {
      name: "dirichlet-5",
      configJson: JSON.stringify({ partition: { clients: 5, scheme: "dirichlet" }, training: { rounds: 8 } }),
      createdUnix: 1700000000,
      createdBy: "ann",
    });
    const broken = create(TemplateSchema, { name: "broken", configJson: "{oops" });
    server(calls, { templates: [tpl, broken] });
    const { wrapper: w } = await mountPage(NewRunView, "/runs/new");
    expect(button(w, "Load")!.attributes("disabled")).toBeDefined();
    await w.find("#tpl-select").setValue("dirichlet-5");
    await button(w, "Load")!.trigger("click");
    await flushPromises();
    expect(value(w, "#f-training-rounds")).toBe("8");
    expect(value(w, "#f-training-client_lr")).toBe("0.1"); // not in the template: the default
    expect(value(w, "#f-partition-scheme")).toBe("dirichlet");
    expect(value(w, "#sim-count")).toBe("5");
    expect(w.find('p[role="status"]').text()).toMatch(/^Loaded template “dirichlet-5” \(saved .+ by ann\)\.$/);
    await settle();
    expect(JSON.parse(calls.validate.at(-1)!.configJson)).toMatchObject({ partition: { clients: 5, scheme: "dirichlet" }, training: { rounds: 8, client_lr: 0.1 } });

    await w.find("#tpl-select").setValue("broken");
    await button(w, "Load")!.trigger("click");
    expect(w.find('p[role="status"]').text()).toBe("Template “broken” does not hold valid JSON.");
    expect(value(w, "#f-training-rounds")).toBe("8");
  });

  it("lets a viewer look but not start or save", async () => {
    loginAs("viewer");
    server(calls);
    const { wrapper: w } = await mountPage(NewRunView, "/runs/new");
    expect(w.find(".banner.warn").text()).toContain("only an admin can start runs");
    await w.find("#tpl-name").setValue("mine");
    expect(button(w, "Start run")!.attributes("disabled")).toBeDefined();
    expect(button(w, "Save as template")!.attributes("disabled")).toBeDefined();
  });
});
