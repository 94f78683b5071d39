// A page per pipeline, of the kind its declaration names (tritonfleet/pipelines: Pipeline.playground; one
// that declares none gets the generic form), calling the front door's KServe v2 API the way any client
// does, and showing the curl and Python calls that do the same.
import { getJSON, postJSON, request, stream } from "./api.js";
import { clear, fmt, h } from "./dom.js";
import { formPython, generateSnippets, imageSnippets, jsonInferSnippets, tabularPython, textsPython } from "./snippets.js";

export const KINDS = { image: imagePage, texts: textsPage, tabular: tabularPage, form: formPage };

export async function playgroundPage(view, playground) {
  const page = KINDS[playground.kind];
  const body = h("div", { class: "playground-body" });
  const tabs = h("div", { class: "tabs", role: "tablist" });
  const show = async (model) => {
    for (const tab of tabs.children) tab.setAttribute("aria-selected", String(tab.dataset.model === model));
    clear(body, h("p", { class: "muted" }, "loading…"));
    try {
      const config = await getJSON(`/v2/models/${encodeURIComponent(model)}/config`);
      await page(body, model, playground.params, config, playground.streaming.includes(model));
    } catch (error) {
      clear(body, h("p", { class: "error", role: "alert" }, error.message));
    }
  };
  for (const model of playground.models) {
    const tab = h("button", { type: "button", role: "tab", class: "tab", "data-model": model }, model);
    tab.addEventListener("click", () => show(model));
    tabs.append(tab);
  }
  clear(
    view,
    h(
      "section",
      { class: "card playground", "data-kind": playground.kind },
      h("h2", {}, playground.pipeline),
      h("p", { class: "muted" }, playground.summary),
      playground.models.length > 1 ? tabs : null,
      page ? body : h("p", { class: "error" }, `this console has no page for playgrounds of kind "${playground.kind}"`),
    ),
  );
  if (page && playground.models.length) await show(playground.models[0]);
}

// Bars of probabilities, best first: a <meter> each (no inline style).
function bars(rows) {
  return h(
    "ol",
    { class: "bars" },
    rows.map(({ label, score }) =>
      h("li", {}, h("span", { class: "bar-label" }, label), h("meter", { min: 0, max: 1, value: score }), h("span", { class: "bar-value" }, `${fmt(score * 100, 1)}%`)),
    ),
  );
}

const inferPath = (model) => `/v2/models/${encodeURIComponent(model)}/infer`;

// --- image: an encoded image in (KServe v2's binary data extension), the top classes out ---------------

function imagePage(body, model, params) {
  const topK = params.top_k || 5;
  const file = h("input", { type: "file", accept: "image/*", id: "image-file" });
  const preview = h("img", { class: "preview", alt: "", hidden: true });
  const drop = h("label", { class: "drop", for: "image-file" }, h("strong", {}, "Drop an image here"), h("span", { class: "muted" }, " or choose a file"), file);
  const out = h("div", { class: "result", id: "image-result" });
  const code = h("div", { class: "snippets" });
  for (const name of ["dragenter", "dragover"]) drop.addEventListener(name, (e) => (e.preventDefault(), drop.classList.add("over")));
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) classify(e.dataTransfer.files[0]);
  });
  file.addEventListener("change", () => file.files.length && classify(file.files[0]));

  async function classify(blob) {
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(blob);
    preview.hidden = false;
    clear(out, h("p", { class: "muted" }, "classifying…"));
    const bytes = new Uint8Array(await blob.arrayBuffer());
    const header = JSON.stringify({
      inputs: [{ name: params.input, shape: [1, 1], datatype: "BYTES", parameters: { binary_data_size: bytes.length + 4 } }],
      outputs: [{ name: params.output, parameters: { classification: topK, binary_data: false } }],
    });
    const head = new TextEncoder().encode(header);
    const payload = new Uint8Array(head.length + 4 + bytes.length);
    payload.set(head, 0);
    new DataView(payload.buffer).setUint32(head.length, bytes.length, true);
    payload.set(bytes, head.length + 4);
    clear(code, imageSnippets(model, header, blob.name, bytes.length, params));
    try {
      const response = await request(inferPath(model), {
        method: "POST",
        headers: { "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": String(head.length) },
        body: payload,
      });
      const result = await response.json();
      const entries = result.outputs.find((o) => o.name === params.output).data;
      const rows = entries.map((entry) => {
        const [score, index, ...label] = String(entry).split(":");
        return { score: Number(score), index: Number(index), label: label.join(":") };
      });
      clear(out, h("p", { class: "top", id: "image-top" }, rows[0].label), bars(rows));
    } catch (error) {
      clear(out, h("p", { class: "error", role: "alert" }, error.message));
    }
  }
  clear(body, h("div", { class: "split" }, h("div", {}, drop, preview), out), code);
}

// --- texts: texts in, their embeddings' cosine similarities ------------------------------------------

function textsPage(body, model, params) {
  const area = h("textarea", { id: "texts-input", rows: 6 });
  area.value = (params.examples || []).join("\n");
  const go = h("button", { type: "button", id: "texts-run" }, "Embed and compare");
  const out = h("div", { class: "result", id: "texts-result" });
  const code = h("div", { class: "snippets" });
  go.addEventListener("click", async () => {
    const texts = area.value.split("\n").map((t) => t.trim()).filter(Boolean);
    if (!texts.length) return;
    const request_ = {
      inputs: [{ name: params.input, shape: [texts.length, 1], datatype: "BYTES", data: texts }],
      outputs: [{ name: params.output, parameters: { binary_data: false } }],
    };
    clear(code, jsonInferSnippets(model, request_, textsPython(model, texts, params)));
    clear(out, h("p", { class: "muted" }, "embedding…"));
    try {
      const result = await postJSON(inferPath(model), request_);
      const output = result.outputs.find((o) => o.name === params.output);
      const width = output.shape[output.shape.length - 1];
      const vectors = texts.map((_, i) => output.data.slice(i * width, (i + 1) * width));
      const cosine = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);
      const head = h("tr", {}, h("th", {}, ""), texts.map((_, j) => h("th", { scope: "col" }, `${j + 1}`)));
      const rows = vectors.map((a, i) =>
        h(
          "tr",
          {},
          h("th", { scope: "row", title: texts[i] }, `${i + 1}. ${texts[i]}`),
          vectors.map((b) => {
            const s = cosine(a, b);
            return h("td", { class: `sim sim-${Math.max(0, Math.min(10, Math.round(s * 10)))}` }, fmt(s, 3));
          }),
        ),
      );
      clear(out, h("p", { class: "muted" }, `${texts.length} texts, ${width}-d unit vectors: cosine similarity`), h("table", { class: "matrix", id: "texts-matrix" }, h("thead", {}, head), h("tbody", {}, rows)));
    } catch (error) {
      clear(out, h("p", { class: "error", role: "alert" }, error.message));
    }
  });
  clear(body, h("label", {}, "One text per line", area), h("div", { class: "row" }, go), out, code);
}

// --- tabular: a form of the config's feature names, class probabilities out ---------------------------

const namesOf = (config, parameter) =>
  (config.parameters?.[parameter]?.string_value || "").split(",").map((n) => n.trim()).filter(Boolean);

function tabularPage(body, model, params, config) {
  const names = namesOf(config, params.features);
  const classes = namesOf(config, params.classes);
  const example = params.examples?.[model];
  const start = Array.isArray(example) ? example : names.map((n) => example?.[n] ?? 0);
  const fields = names.map((name, i) =>
    h("label", { class: "field" }, h("span", {}, name), h("input", { type: "number", step: "any", required: true, name, value: start[i] ?? 0, "data-feature": name })),
  );
  const out = h("div", { class: "result", id: "tabular-result" });
  const code = h("div", { class: "snippets" });
  const form = h("form", { class: "features", id: "tabular-form" }, h("div", { class: "grid" }, fields), h("div", { class: "row" }, h("button", { type: "submit", id: "tabular-run" }, "Predict")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const values = fields.map((f) => Number(f.querySelector("input").value));
    const request_ = {
      inputs: [{ name: params.input, shape: [1, names.length], datatype: "FP32", data: values }],
      outputs: [params.label, params.output].map((name) => ({ name, parameters: { binary_data: false } })),
    };
    clear(code, jsonInferSnippets(model, request_, tabularPython(model, names, values, params)));
    clear(out, h("p", { class: "muted" }, "predicting…"));
    try {
      const result = await postJSON(inferPath(model), request_);
      const label = result.outputs.find((o) => o.name === params.label).data[0];
      const probs = result.outputs.find((o) => o.name === params.output).data;
      const rows = probs.map((score, i) => ({ label: classes[i] ?? `class ${i}`, score })).sort((a, b) => b.score - a.score);
      clear(out, h("p", { class: "top", id: "tabular-class" }, classes[label] ?? `class ${label}`), bars(rows));
    } catch (error) {
      clear(out, h("p", { class: "error", role: "alert" }, error.message));
    }
  });
  clear(body, h("p", { class: "muted" }, `${names.length} features (the config's ${params.features}), classes: ${classes.join(", ")}`), h("div", { class: "split" }, form, out), code);
}

// --- form: the generic page of a pipeline that declares none, an input per tensor of the model's config ---

const DATATYPES = { TYPE_STRING: "BYTES" };
const datatypeOf = (tensor) => DATATYPES[tensor.data_type] || tensor.data_type.replace(/^TYPE_/, "");
const count = (dims) => dims.reduce((n, d) => n * (d > 0 ? d : 1), 1);

// A field for one input: text (one element per line) for strings, numbers separated by commas or spaces,
// true/false for booleans. An optional input left empty is not sent.
function inputField(tensor) {
  const datatype = datatypeOf(tensor);
  const dims = tensor.dims.map(Number);
  const many = dims.includes(-1) || count(dims) > 1;
  const hint = `${datatype} [${dims.join(", ")}]${tensor.optional ? ", optional" : ""}`;
  let control;
  if (datatype === "BOOL" && !many) {
    control = h("select", {}, ["", "true", "false"].map((v) => h("option", { value: v }, v || (tensor.optional ? "not sent" : "false"))));
  } else if (datatype === "BYTES") {
    control = h("textarea", { rows: many ? 3 : 2, placeholder: many ? "one element per line" : "" });
  } else {
    control = h("input", { type: "text", inputmode: "decimal", placeholder: many ? "numbers, separated by commas" : "a number" });
  }
  control.dataset.input = tensor.name;
  const label = h("label", { class: "field" }, h("span", {}, `${tensor.name} `, h("span", { class: "muted" }, hint)), control);
  const read = () => {
    const text = control.value.trim();
    if (!text) return tensor.optional ? null : datatype === "BOOL" ? [false] : [];
    if (datatype === "BYTES") return many ? text.split("\n").filter((line) => line.length) : [control.value];
    if (datatype === "BOOL") return text.split(/[\s,]+/).map((v) => v === "true" || v === "1");
    return text.split(/[\s,]+/).filter(Boolean).map(Number);
  };
  return { tensor, datatype, dims, label, read };
}

function formPage(body, model, params, config, streaming) {
  const batched = Number(config.max_batch_size || 0) > 0;
  const fields = (config.input || []).map(inputField);
  const required = fields.filter((f) => !f.tensor.optional);
  const optional = fields.filter((f) => f.tensor.optional);
  const out = h("div", { class: "result", id: "form-result" });
  const code = h("div", { class: "snippets" });
  const run = h("button", { type: "submit", id: "form-run" }, streaming ? "Generate" : "Infer");
  const form = h(
    "form",
    { class: "features", id: "form-inputs" },
    h("div", { class: "grid wide" }, required.map((f) => f.label)),
    optional.length ? h("details", {}, h("summary", {}, `${optional.length} optional inputs`), h("div", { class: "grid wide" }, optional.map((f) => f.label))) : null,
    h("div", { class: "row" }, run),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const given = fields.map((f) => ({ ...f, values: f.read() })).filter((f) => f.values !== null);
    clear(out, h("p", { class: "muted" }, streaming ? "generating…" : "running…"));
    try {
      if (streaming) await generate(model, given, out, code);
      else await infer(model, given, batched, config, out, code);
    } catch (error) {
      clear(out, h("p", { class: "error", role: "alert" }, error.message));
    }
  });
  const how = streaming
    ? "The model streams: the form calls Triton's generate_stream extension (inputs by name)."
    : "The form calls KServe v2 infer (JSON).";
  clear(body, h("p", { class: "muted" }, `A form of ${model}'s config (this pipeline declares no playground). ${how}`), form, out, code);
}

async function infer(model, given, batched, config, out, code) {
  const body = {
    inputs: given.map((f) => {
      const shape = f.dims.map((d) => (d > 0 ? d : 1));
      const free = f.dims.indexOf(-1);
      if (free >= 0) shape[free] = f.values.length / count(f.dims.filter((d, i) => i !== free));
      return { name: f.tensor.name, shape: batched ? [1, ...shape] : shape, datatype: f.datatype, data: f.values };
    }),
    outputs: (config.output || []).map((o) => ({ name: o.name, parameters: { binary_data: false } })),
  };
  clear(code, jsonInferSnippets(model, body, formPython(model, body)));
  const result = await postJSON(inferPath(model), body);
  clear(out, outputsTable(result.outputs.map((o) => ({ name: o.name, shape: o.shape, data: o.data }))));
}

async function generate(model, given, out, code) {
  const body = Object.fromEntries(given.map((f) => [f.tensor.name, count(f.dims) === 1 && !f.dims.includes(-1) ? f.values[0] : f.values]));
  clear(code, generateSnippets(model, body));
  const outputs = new Map();
  let events = 0;
  await stream(`/v2/models/${encodeURIComponent(model)}/generate_stream`, body, (event) => {
    if (event.error) throw new Error(event.error);
    events += 1;
    for (const [name, value] of Object.entries(event)) {
      if (["model_name", "model_version", "id"].includes(name)) continue;
      const prior = outputs.get(name);
      outputs.set(name, typeof value === "string" && typeof prior === "string" ? prior + value : value);
    }
    clear(out, h("p", { class: "muted" }, `${events} response${events === 1 ? "" : "s"}`), outputsTable([...outputs].map(([name, data]) => ({ name, data }))));
  });
  if (!events) clear(out, h("p", { class: "muted" }, "no response"));
}

function outputsTable(outputs) {
  const shown = (data) => {
    const flat = Array.isArray(data) ? data.flat(Infinity) : [data];
    const text = flat.slice(0, 64).map((v) => (typeof v === "number" ? String(Number(v.toPrecision(6))) : String(v))).join(", ");
    return flat.length > 64 ? `${text}, … (${flat.length} values)` : text;
  };
  return h(
    "table",
    { class: "outputs", id: "form-outputs" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "output"), h("th", { scope: "col" }, "shape"), h("th", { scope: "col" }, "data"))),
    h("tbody", {}, outputs.map((o) => h("tr", { "data-output": o.name }, h("th", { scope: "row" }, o.name), h("td", {}, o.shape ? `[${o.shape.join(", ")}]` : ""), h("td", { class: "data" }, shown(o.data))))),
  );
}
