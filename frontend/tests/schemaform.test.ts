import { describe, expect, it } from "vitest";
import { mount } from "@vue/test-utils";
import { reactive } from "vue";
import SchemaForm from "../src/components/SchemaForm.vue";
import { fieldInfo, parseInput, setPath, type JsonSchema } from "../src/lib/schema";

const schema: JsonSchema = {
  $defs: {
    Training: {
      type: "object",
      title: "Training",
      properties: {
        rounds: { type: "integer", minimum: 1, default: 30, title: "Rounds", description: "federated rounds" },
        client_lr: { type: "number", exclusiveMinimum: 0, default: 0.1, title: "Client Lr" },
        local_steps: { anyOf: [{ type: "integer", minimum: 1 }, { type: "null" }], default: null, title: "Local Steps" },
        lr_schedule: { type: "string", enum: ["constant", "cosine"], default: "constant", title: "Lr Schedule" },
        shuffle: { type: "boolean", default: true, title: "Shuffle" },
      },
    },
    Model: {
      type: "object",
      properties: { hidden: { type: "array", items: { type: "integer" }, title: "Hidden" } },
    },
  },
  type: "object",
  properties: {
    training: { $ref: "#/$defs/Training" },
    model: { $ref: "#/$defs/Model" },
    output: { type: "object", properties: { dir: { type: "string" } } },
  },
};

const value = { training: { rounds: 30, client_lr: 0.1, local_steps: null, lr_schedule: "constant", shuffle: true }, model: { hidden: [64, 32] } };

function mountForm(errors: { path: string; message: string }[] = [], sections = ["training", "model"]) {
  return mount(SchemaForm, { props: { schema, modelValue: value, sections, errors }, attachTo: document.body });
}

describe("SchemaForm", () => {
  it("renders one labelled control per field of the chosen sections", () => {
    const w = mountForm();
    expect(w.findAll("legend").map((l) => l.text())).toEqual(["Training", "Model"]);
    const rounds = w.find("#f-training-rounds");
    expect(rounds.attributes("type")).toBe("number");
    expect(rounds.attributes("min")).toBe("1");
    expect((rounds.element as HTMLInputElement).value).toBe("30");
    expect(w.find('label[for="f-training-rounds"]').text()).toBe("Rounds");
    expect(w.find("#f-training-lr_schedule").element.tagName).toBe("SELECT");
    expect(w.findAll("#f-training-lr_schedule option").map((o) => o.text())).toEqual(["constant", "cosine"]);
    expect(w.find("#f-training-shuffle").attributes("type")).toBe("checkbox");
    expect((w.find("#f-model-hidden").element as HTMLInputElement).value).toBe("64, 32");
    expect(w.find("#f-output-dir").exists()).toBe(false);
    // every input, select and textarea has a label
    for (const el of w.findAll("input, select, textarea")) {
      expect(w.find(`label[for="${el.attributes("id")}"]`).exists()).toBe(true);
    }
    w.unmount();
  });

  it("shows each FieldError next to its field", () => {
    const w = mountForm([
      { path: "training.client_lr", message: "must be greater than 0" },
      { path: "model.hidden.1", message: "must be positive" },
    ]);
    const lr = w.find("#f-training-client_lr");
    expect(lr.attributes("aria-invalid")).toBe("true");
    expect(w.find("#f-training-client_lr-err").text()).toBe("must be greater than 0");
    expect(lr.attributes("aria-describedby")).toContain("f-training-client_lr-err");
    expect(w.find("#f-model-hidden-err").text()).toBe("must be positive");
    expect(w.find("#f-training-rounds-err").exists()).toBe(false);
    w.unmount();
  });

  it("emits the whole config with the typed value parsed", async () => {
    const w = mountForm();
    await w.find("#f-training-rounds").setValue("12");
    await w.find("#f-training-local_steps").setValue("");
    await w.find("#f-model-hidden").setValue("128, 64, 8");
    await w.find("#f-training-lr_schedule").setValue("cosine");
    const emitted = w.emitted("update:modelValue")!.map((e) => e[0] as typeof value);
    expect(emitted[0].training.rounds).toBe(12);
    expect(emitted[0].training.client_lr).toBe(0.1);
    expect(emitted[1].training.local_steps).toBeNull();
    expect(emitted[2].model.hidden).toEqual([128, 64, 8]);
    expect(emitted[3].training.lr_schedule).toBe("cosine");
    expect(value.training.rounds).toBe(30); // the input object is not mutated
    w.unmount();
  });

  it("refuses text that is not a number instead of sending it", async () => {
    const w = mountForm();
    await w.find("#f-model-hidden").setValue("64, x");
    expect(w.emitted("update:modelValue")).toBeUndefined();
    expect(w.find("#f-model-hidden-err").text()).toMatch(/number/);
    w.unmount();
  });
});

describe("schema helpers", () => {
  it("reads nullable anyOf fields as their non-null type", () => {
    const info = fieldInfo({ anyOf: [{ type: "number", minimum: 0 }, { type: "null" }], default: null }, schema);
    expect(info.kind).toBe("number");
    expect(info.nullable).toBe(true);
    expect(parseInput(info, "")).toBeNull();
    expect(parseInput(info, "2.5")).toBe(2.5);
    expect(parseInput(info, "abc")).toBeUndefined();
  });
  it("sets dotted paths without touching the original", () => {
    const a = { x: { y: 1 } };
    const b = setPath(a, "x.z.w", 2);
    expect(b).toEqual({ x: { y: 1, z: { w: 2 } } });
    expect(a).toEqual({ x: { y: 1 } });
  });
  it("copies Vue reactive state (the form's config is reactive)", () => {
    const state = reactive({ training: { rounds: 3 }, model: { hidden: [8] } });
    const next = setPath(state, "training.rounds", 5);
    expect(next).toEqual({ training: { rounds: 5 }, model: { hidden: [8] } });
    expect(state.training.rounds).toBe(3);
  });
});
