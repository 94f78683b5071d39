// The console's entry: the login screen when the fleet needs a key, then the pages (hash routes):
// #/chat, #/play/<pipeline> (one per declared playground), #/fleet.
import { forgetKey, getJSON, key, setKey, whenUnauthorized } from "./api.js";
import { chatPage } from "./chat.js";
import { clear, h } from "./dom.js";
import { fleetPage, stopFleet } from "./fleet.js";
import { playgroundPage } from "./playgrounds.js";

const $ = (id) => document.getElementById(id);
let catalog = null;

function showLogin(message) {
  catalog = null;
  stopFleet();
  $("nav").replaceChildren();
  $("view").replaceChildren();
  $("view").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("login-error").textContent = message && key() ? message : "";
  $("login-key").value = "";
  $("login-key").focus();
}

async function boot() {
  try {
    catalog = await getJSON("/console/api/pipelines");
  } catch (error) {
    if (error.status !== 401) clear($("view"), h("p", { class: "error", role: "alert" }, error.message));
    return;
  }
  $("login").hidden = true;
  $("view").hidden = false;
  $("logout").hidden = !key();
  const links = [["#/chat", "Chat"], ...catalog.playgrounds.map((p) => [`#/play/${p.pipeline}`, p.pipeline]), ["#/fleet", "Fleet"]];
  clear($("nav"), links.map(([href, text]) => h("a", { href, "data-page": href.slice(2) }, text)));
  route();
}

async function route() {
  if (!catalog) return;
  stopFleet();
  const hash = location.hash || "#/chat";
  for (const a of $("nav").children) a.toggleAttribute("aria-current", a.getAttribute("href") === hash);
  const view = $("view");
  try {
    if (hash.startsWith("#/play/")) {
      const playground = catalog.playgrounds.find((p) => `#/play/${p.pipeline}` === hash);
      if (playground) return await playgroundPage(view, playground);
    }
    if (hash === "#/fleet") return await fleetPage(view);
    return await chatPage(view, catalog);
  } catch (error) {
    if (error.status !== 401) clear(view, h("p", { class: "error", role: "alert" }, error.message));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  whenUnauthorized(showLogin);
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setKey($("login-key").value.trim());
    boot();
  });
  $("logout").addEventListener("click", () => {
    forgetKey();
    showLogin("");
    boot();
  });
  window.addEventListener("hashchange", route);
  boot();
});
