// The chat page: the chat models of /v1/models, streamed token by token over /v1/chat/completions (SSE),
// stopped with an AbortController (the server sees the disconnect and stops the generation). Each answer
// shows its time to first token and tokens per second; rag's numbered sources open their passage.
import { ApiError, getJSON, stream } from "./api.js";
import { clear, fmt, h } from "./dom.js";
import { render } from "./markdown.js";
import { chatSnippets } from "./snippets.js";

const state = { messages: [], model: null, busy: null };

export async function chatPage(view, catalog) {
  const listed = await getJSON("/v1/models");
  const chat = new Map(catalog.chat.map((m) => [m.id, m]));
  const ids = listed.data.map((m) => m.id).filter((id) => chat.has(id));
  if (!ids.length) {
    clear(view, h("p", { class: "muted" }, "No chat model is served (fleet serve --models llm,rag serves them)."));
    return;
  }
  if (!ids.includes(state.model)) state.model = ids[0];

  const model = h("select", { id: "chat-model", "aria-label": "model" }, ids.map((id) => h("option", { value: id }, id)));
  model.value = state.model;
  const system = h("textarea", { id: "chat-system", rows: 3, placeholder: "optional system prompt" });
  const temperature = h("input", { id: "chat-temperature", type: "number", min: 0, max: 2, step: 0.1, value: 0 });
  const maxTokens = h("input", { id: "chat-max-tokens", type: "number", min: 1, max: 2048, step: 1, value: 256 });
  const json = h("input", { id: "chat-json", type: "checkbox" });
  const transcript = h("div", { id: "transcript", class: "transcript" });
  const input = h("textarea", { id: "chat-input", rows: 2, placeholder: "Ask something… (Enter sends, Shift+Enter breaks the line)" });
  const send = h("button", { id: "chat-send", type: "submit" }, "Send");
  const stop = h("button", { id: "chat-stop", type: "button", class: "danger", disabled: true }, "Stop");
  const reset = h("button", { id: "chat-new", type: "button", class: "quiet" }, "New chat");
  const code = h("div", { class: "snippets" });
  const dialog = passageDialog();

  model.addEventListener("change", () => {
    state.model = model.value;
  });
  reset.addEventListener("click", () => {
    state.messages = [];
    clear(transcript);
  });
  stop.addEventListener("click", () => state.busy?.abort());
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  const form = h("form", { class: "composer", id: "chat-form" }, input, h("div", { class: "row" }, send, stop, reset));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || state.busy) return;
    input.value = "";
    const settings = {
      system: system.value.trim(),
      temperature: Number(temperature.value),
      maxTokens: Number(maxTokens.value),
      json: json.checked,
    };
    ask(text, settings, chat.get(state.model), { transcript, send, stop, code, dialog });
  });

  for (const m of state.messages) transcript.append(bubble(m.role, m.content));
  clear(
    view,
    h(
      "div",
      { class: "chat" },
      h(
        "aside",
        { class: "card settings" },
        h("h2", {}, "Chat"),
        h("label", {}, "Model", model),
        h("label", {}, "System prompt", system),
        h("div", { class: "row" }, h("label", {}, "Temperature", temperature), h("label", {}, "Max tokens", maxTokens)),
        h("label", { class: "check" }, json, "JSON mode (response_format json_object)"),
        code,
      ),
      h("section", { class: "card conversation" }, transcript, form),
    ),
    dialog,
  );
  input.focus();
}

function bubble(role, text) {
  const body = h("div", { class: "msg-body" });
  if (role === "assistant") render(body, text);
  else body.textContent = text;
  return h("div", { class: `msg ${role}`, "data-state": "done" }, h("div", { class: "msg-role" }, role), body);
}

async function ask(text, settings, info, ui) {
  state.messages.push({ role: "user", content: text });
  ui.transcript.append(bubble("user", text));
  const body = h("div", { class: "msg-body" });
  const stats = h("div", { class: "stats" }, "waiting for the first token…");
  const sources = h("ol", { class: "sources" });
  const answer = h("div", { class: "msg assistant", "data-state": "streaming" }, h("div", { class: "msg-role" }, info.id), body, sources, stats);
  ui.transcript.append(answer);
  answer.scrollIntoView({ block: "end" });

  const messages = [...(settings.system ? [{ role: "system", content: settings.system }] : []), ...state.messages];
  const request = {
    model: info.id,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: settings.temperature,
    max_tokens: settings.maxTokens,
  };
  if (settings.json) request.response_format = { type: "json_object" };
  clear(ui.code, chatSnippets(request));

  const controller = new AbortController();
  state.busy = controller;
  ui.send.disabled = true;
  ui.stop.disabled = false;
  let content = "";
  let pieces = 0;
  let usage = null;
  let finish = null;
  let first = null;
  let last = null;
  let pending = false;
  const started = performance.now();
  const paint = () => {
    pending = false;
    if (settings.json) clear(body, h("pre", { class: "code" }, h("code", {}, content)));
    else render(body, content);
  };
  const result = (outcome) => {
    answer.dataset.state = outcome;
    const tokens = usage?.completion_tokens ?? pieces;
    const exact = usage ? "" : "~";
    const rate = first !== null && last > first && tokens > 1 ? ((tokens - 1) * 1000) / (last - first) : null;
    const parts = [
      first === null ? "no token" : `TTFT ${fmt(first - started, 0)} ms`,
      `${exact}${tokens} tokens`,
      rate === null ? null : `${fmt(rate)} tokens/s`,
      outcome === "stopped" ? "stopped" : finish ? `finish: ${finish}` : null,
    ];
    stats.textContent = parts.filter(Boolean).join(" · ");
    if (rate !== null) stats.dataset.tokensPerSecond = rate.toFixed(2);
    if (first !== null) stats.dataset.ttftMs = (first - started).toFixed(1);
  };
  try {
    await stream(
      "/v1/chat/completions",
      request,
      (chunk) => {
        if (chunk.error) throw new ApiError(500, chunk.error.message || String(chunk.error));
        if (chunk.usage) usage = chunk.usage;
        if (chunk.sources) showSources(sources, chunk.sources, info, ui.dialog);
        for (const choice of chunk.choices || []) {
          if (choice.finish_reason) finish = choice.finish_reason;
          const piece = choice.delta?.content;
          if (!piece) continue;
          const now = performance.now();
          if (first === null) {
            first = now;
            stats.textContent = `TTFT ${fmt(first - started, 0)} ms · streaming…`;
          }
          last = now;
          pieces += 1;
          content += piece;
          if (!pending) {
            pending = true;
            requestAnimationFrame(paint);
          }
        }
      },
      controller.signal,
    );
    paint();
    result("done");
  } catch (error) {
    paint();
    if (error.name === "AbortError") {
      result("stopped");
    } else {
      result("error");
      answer.append(h("p", { class: "error", role: "alert" }, error.message));
    }
  } finally {
    state.messages.push({ role: "assistant", content });
    state.busy = null;
    ui.send.disabled = false;
    ui.stop.disabled = true;
  }
}

function showSources(list, names, info, dialog) {
  clear(
    list,
    names.map((name, i) => {
      const open = h("button", { type: "button", class: "link", "data-source": name }, `[${i + 1}] ${name}`);
      if (info.passages) open.addEventListener("click", () => showPassage(dialog, info.id, name));
      else open.disabled = true;
      return h("li", {}, open);
    }),
  );
}

function passageDialog() {
  const dialog = h("dialog", { id: "passage", class: "card" });
  dialog.addEventListener("click", (e) => {
    if (e.target === dialog) dialog.close();
  });
  return dialog;
}

async function showPassage(dialog, model, source) {
  const close = h("button", { type: "button", class: "quiet" }, "Close");
  close.addEventListener("click", () => dialog.close());
  const text = h("div", { class: "passage-text" }, "loading…");
  clear(dialog, h("div", { class: "snippet-head" }, h("strong", {}, source), close), text);
  dialog.showModal();
  try {
    const passage = await getJSON(`/console/api/passage/${encodeURIComponent(model)}/${encodeURIComponent(source)}`);
    clear(text, passage.heading ? h("p", { class: "muted" }, passage.heading) : null, h("div", { class: "passage-body" }));
    render(text.lastChild, passage.text);
  } catch (error) {
    clear(text, h("p", { class: "error" }, error.message));
  }
}
