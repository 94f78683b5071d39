// The curl command and the Python program that do what a page just did, with the key left to the shell's
// $TRITONFLEET_API_KEY (never the key itself).
import { key, origin } from "./api.js";
import { snippet } from "./dom.js";

export const shellQuote = (text) => `'${String(text).replace(/'/g, "'\\''")}'`;
const auth = () => (key() ? ` \\\n  -H "Authorization: Bearer $TRITONFLEET_API_KEY"` : "");
const pyKey = () => (key() ? 'os.environ["TRITONFLEET_API_KEY"]' : '"none"');
const pyHeaders = () => (key() ? '{"Authorization": "Bearer " + os.environ["TRITONFLEET_API_KEY"]}' : "None");
const pyJSON = (value) => JSON.stringify(value, null, 4).replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None");

export function chatSnippets(request) {
  const curl = `curl -sN ${origin()}/v1/chat/completions${auth()} \\\n  -H 'Content-Type: application/json' \\\n  -d ${shellQuote(JSON.stringify(request))}`;
  const { model, messages, stream: _s, stream_options: _o, ...options } = request;
  const extra = Object.entries(options)
    .map(([k, v]) => `    ${k}=${pyJSON(v)},\n`)
    .join("");
  const python = `import os

from openai import OpenAI

client = OpenAI(base_url="${origin()}/v1", api_key=${pyKey()})
stream = client.chat.completions.create(
    model=${JSON.stringify(model)},
    messages=${pyJSON(messages).replace(/\n/g, "\n    ")},
${extra}    stream=True,
)
for chunk in stream:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
print()`;
  return [snippet("curl", curl), snippet("Python (openai)", python)];
}

const hex4 = (n) =>
  [0, 1, 2, 3].map((i) => `\\x${((n >>> (8 * i)) & 0xff).toString(16).padStart(2, "0")}`).join("");

export function imageSnippets(model, header, fileName, size, params) {
  const name = fileName || "image.jpg";
  const curl = `{ printf '%s' ${shellQuote(header)}; printf '${hex4(size)}'; cat ${shellQuote(name)}; } |
  curl -s ${origin()}/v2/models/${model}/infer${auth()} \\
  -H 'Content-Type: application/octet-stream' \\
  -H 'Inference-Header-Content-Length: ${new TextEncoder().encode(header).length}' \\
  --data-binary @-`;
  const python = `import os

import numpy as np
import tritonclient.http as httpclient

client = httpclient.InferenceServerClient("${location.host}")
image = httpclient.InferInput("${params.input}", [1, 1], "BYTES")
image.set_data_from_numpy(np.array([[open(${JSON.stringify(name)}, "rb").read()]], dtype=np.object_))
top = httpclient.InferRequestedOutput("${params.output}", class_count=${params.top_k || 5})
result = client.infer("${model}", [image], outputs=[top], headers=${pyHeaders()})
for entry in result.as_numpy("${params.output}").reshape(-1):
    score, index, label = entry.decode().split(":", 2)
    print(f"{float(score):7.2%}  {label}")`;
  return [snippet("curl (KServe v2, binary data)", curl), snippet("Python (tritonclient)", python)];
}

export function jsonInferSnippets(model, body, python) {
  const curl = `curl -s ${origin()}/v2/models/${model}/infer${auth()} \\\n  -H 'Content-Type: application/json' \\\n  -d ${shellQuote(JSON.stringify(body))}`;
  return [snippet("curl (KServe v2, JSON)", curl), snippet("Python (tritonclient)", python)];
}

export function textsPython(model, texts, params) {
  return `import os

import numpy as np
import tritonclient.http as httpclient

client = httpclient.InferenceServerClient("${location.host}")
texts = ${pyJSON(texts)}
batch = httpclient.InferInput("${params.input}", [len(texts), 1], "BYTES")
batch.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
result = client.infer("${model}", [batch], headers=${pyHeaders()})
vectors = result.as_numpy("${params.output}")  # unit length: cosine similarity is a dot product
print(np.round(vectors @ vectors.T, 3))`;
}

export function tabularPython(model, names, values, params) {
  return `import os

import numpy as np
import tritonclient.http as httpclient

client = httpclient.InferenceServerClient("${location.host}")
row = ${pyJSON(Object.fromEntries(names.map((n, i) => [n, values[i]])))}
features = httpclient.InferInput("${params.input}", [1, ${names.length}], "FP32")
features.set_data_from_numpy(np.array([list(row.values())], dtype=np.float32))
result = client.infer("${model}", [features], headers=${pyHeaders()})
print(result.as_numpy("${params.label}"), result.as_numpy("${params.output}"))`;
}

export function formPython(model, body) {
  const inputs = body.inputs
    .map(
      (i, n) => `inputs.append(httpclient.InferInput("${i.name}", ${pyList(i.shape)}, "${i.datatype}"))
inputs[${n}].set_data_from_numpy(np.array(${pyList(i.data)}, dtype=np.${i.datatype === "BYTES" ? "object_" : NUMPY[i.datatype]}).reshape(${pyList(i.shape)}))`,
    )
    .join("\n");
  return `import os

import numpy as np
import tritonclient.http as httpclient

client = httpclient.InferenceServerClient("${location.host}")
inputs = []
${inputs}
result = client.infer("${model}", inputs, headers=${pyHeaders()})
for output in result.get_response()["outputs"]:
    print(output["name"], result.as_numpy(output["name"]))`;
}

// A flat list as a Python literal on one line.
const pyList = (values) => `[${values.map((v) => (typeof v === "boolean" ? (v ? "True" : "False") : JSON.stringify(v))).join(", ")}]`;
const NUMPY = {
  BOOL: "bool_", UINT8: "uint8", UINT16: "uint16", UINT32: "uint32", UINT64: "uint64", INT8: "int8", INT16: "int16",
  INT32: "int32", INT64: "int64", FP16: "float16", FP32: "float32", FP64: "float64",
};

export function generateSnippets(model, body) {
  const curl = `curl -sN ${origin()}/v2/models/${model}/generate_stream${auth()} \\\n  -H 'Content-Type: application/json' \\\n  -d ${shellQuote(JSON.stringify(body))}`;
  const python = `import json
import os

import requests

response = requests.post(
    "${origin()}/v2/models/${model}/generate_stream",
    json=${pyJSON(body).replace(/\n/g, "\n    ")},
    headers=${pyHeaders()},
    stream=True,
)
for line in response.iter_lines():
    if line.startswith(b"data: "):
        print(json.loads(line[6:]))`;
  return [snippet("curl (generate_stream)", curl), snippet("Python (requests)", python)];
}
