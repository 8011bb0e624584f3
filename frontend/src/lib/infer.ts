// In-browser scoring with onnxruntime-web (wasm backend, one thread: no SharedArrayBuffer
// needed). The wasm file is bundled by Vite and fetched from this server, never a CDN.
import { api } from "../api/client";
import { collectFile } from "./export";
import { detectorMeta, onnxMetadata, type DetectorMeta } from "./onnxmeta";

type Ort = typeof import("onnxruntime-web/wasm");
type Session = import("onnxruntime-web/wasm").InferenceSession;

let ortPromise: Promise<Ort> | null = null;

function loadOrt(): Promise<Ort> {
  if (!ortPromise) {
    ortPromise = import("onnxruntime-web/wasm").then((ort) => {
      ort.env.wasm.numThreads = 1;
      ort.env.wasm.proxy = false;
      return ort;
    });
  }
  return ortPromise;
}

export interface LoadedModel {
  modelId: string;
  session: Session;
  meta: DetectorMeta;
  inputName: string;
  hasGradient: boolean;
  bytes: number;
  loadMs: number;
}

const cache = new Map<string, Promise<LoadedModel>>();

/** Exports the model as ONNX once per tab and opens an inference session on it. */
export function loadModel(modelId: string): Promise<LoadedModel> {
  let p = cache.get(modelId);
  if (!p) {
    p = (async () => {
      const t0 = performance.now();
      const [ort, file] = await Promise.all([
        loadOrt(),
        collectFile(api().control.exportModel({ modelId, format: "onnx" })),
      ]);
      const meta = detectorMeta(onnxMetadata(file.bytes));
      const session = await ort.InferenceSession.create(file.bytes, { executionProviders: ["wasm"] });
      return {
        modelId,
        session,
        meta,
        inputName: session.inputNames.includes("features") ? "features" : session.inputNames[0],
        hasGradient: session.outputNames.includes("logit_gradient"),
        bytes: file.bytes.length,
        loadMs: performance.now() - t0,
      };
    })();
    p.catch(() => cache.delete(modelId));
    cache.set(modelId, p);
  }
  return p;
}

export interface Inference {
  probability: number;
  gradient: Float32Array | null;
  ms: number;
}

export async function score(model: LoadedModel, features: number[]): Promise<Inference> {
  const ort = await loadOrt();
  const x = new ort.Tensor("float32", Float32Array.from(features), [1, features.length]);
  const fetches = ["malware_probability", ...(model.hasGradient ? ["logit_gradient"] : [])];
  const t0 = performance.now();
  const out = await model.session.run({ [model.inputName]: x }, fetches);
  const ms = performance.now() - t0;
  const prob = (out.malware_probability.data as Float32Array)[0];
  const grad = model.hasGradient ? (out.logit_gradient.data as Float32Array).slice(0, features.length) : null;
  return { probability: prob, gradient: grad, ms };
}
