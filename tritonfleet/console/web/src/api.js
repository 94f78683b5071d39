// Requests to the fleet: the API key (asked once, kept in this tab's sessionStorage) goes in every request
// as Authorization: Bearer; it is never written anywhere else. Streams are read with fetch + ReadableStream
// (an EventSource can neither POST nor send the header) and stopped with an AbortController.

const KEY = "tritonfleet.key";
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const key = () => sessionStorage.getItem(KEY) || "";
export const setKey = (value) => sessionStorage.setItem(KEY, value);
export const forgetKey = () => sessionStorage.removeItem(KEY);
export const whenUnauthorized = (handler) => {
  onUnauthorized = handler;
};

export function headers(extra = {}) {
  const out = { ...extra };
  if (key()) out.Authorization = `Bearer ${key()}`;
  return out;
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    const error = body.error;
    message = typeof error === "string" ? error : error?.message || message;
  } catch {
    // not JSON: the status says it
  }
  return new ApiError(response.status, message);
}

// fetch with the key; a non-2xx answer throws ApiError (401 also shows the login screen).
export async function request(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers) });
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) onUnauthorized(error.message);
    throw error;
  }
  return response;
}

export const getJSON = async (path, options) => (await request(path, options)).json();

export const postJSON = async (path, body, options = {}) =>
  (
    await request(path, {
      ...options,
      method: "POST",
      headers: { "Content-Type": "application/json", ...(options.headers || {}) },
      body: JSON.stringify(body),
    })
  ).json();

// POST a JSON body and call onData(parsed) for each Server-Sent Event's data until "[DONE]" or the end.
export async function stream(path, body, onData, signal) {
  const response = await request(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
    signal,
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = frame
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      onData(JSON.parse(data));
    }
  }
}

// The base URL as a user would type it in a shell or a program (the page's own origin).
export const origin = () => window.location.origin;
