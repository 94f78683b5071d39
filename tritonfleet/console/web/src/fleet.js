// The fleet page: every model's state and load (fleet status's numbers, throughput and p50/p99 from the
// metrics) and charts of the last 15 minutes. The server keeps the 15 minutes (tritonfleet/console/
// sampler.py); this page asks every 2 s for the points it has not seen and drops those older than 15 min.
import uPlot from "uplot";
import { getJSON } from "./api.js";
import { clear, fmt, h } from "./dom.js";

const WINDOW_S = 15 * 60;
const CHARTS = [
  { key: "requests_s", title: "Requests / s", unit: "req/s" },
  { key: "p99_ms", title: "p99 latency (front door)", unit: "ms" },
  { key: "ttft_ms", title: "Time to first token (p50)", unit: "ms" },
  { key: "tokens_s", title: "Tokens / s", unit: "tok/s" },
  { key: "rejections_s", title: "Rejections / s", unit: "/s" },
];
const COLUMNS = [
  ["name", "model"], ["state", "state"], ["instances", "instances"], ["executions", "executions"],
  ["inferences", "inferences"], ["avg_batch", "avg batch"], ["queue_ms", "queue ms"], ["compute_ms", "compute ms"],
  ["p50", "p50 ms"], ["p99", "p99 ms"], ["throughput", "inf/s"], ["pss_mb", "memory"],
];

let timer = null;

export function stopFleet() {
  clearTimeout(timer);
  timer = null;
}

export async function fleetPage(view) {
  stopFleet();
  const table = h("table", { class: "models", id: "fleet-table" });
  const total = h("p", { class: "muted", id: "fleet-total" });
  const status = h("p", { class: "muted", id: "fleet-updated" });
  const grid = h("div", { class: "charts" });
  clear(view, h("section", { class: "card" }, h("h2", {}, "Fleet"), status, table, total), h("section", { class: "card" }, h("h2", {}, "Last 15 minutes"), grid));
  const data = { t: [], ...Object.fromEntries(CHARTS.map((c) => [c.key, []])) };
  const plots = CHARTS.map((chart) => {
    const box = h("figure", { class: "chart", "data-series": chart.key }, h("figcaption", {}, chart.title));
    grid.append(box);
    const plot = new uPlot(
      {
        width: 360,
        height: 170,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max * 1.1, 1)] } },
        axes: [{ stroke: "#888", grid: { stroke: "#8883" } }, { stroke: "#888", grid: { stroke: "#8883" }, size: 48 }],
        series: [{}, { label: chart.unit, stroke: "#76b900", fill: "#76b90022", width: 1.5, spanGaps: false }],
      },
      [[], []],
      box,
    );
    return { chart, plot, box };
  });
  let since = 0;

  async function tick() {
    try {
      const found = await getJSON(`/console/api/fleet/${since}`);
      const s = found.series;
      if (s.t.length) since = s.t[s.t.length - 1];
      data.t.push(...s.t);
      for (const c of CHARTS) data[c.key].push(...s[c.key]);
      const cutoff = Date.now() / 1000 - WINDOW_S;
      const drop = data.t.findIndex((t) => t >= cutoff);
      if (drop > 0) for (const k of Object.keys(data)) data[k].splice(0, drop);
      for (const { chart, plot, box } of plots) {
        plot.setData([data.t, data[chart.key]]);
        const values = data[chart.key].filter((v) => v !== null);
        box.dataset.points = String(values.length);
        box.dataset.max = String(values.length ? Math.max(...values) : 0);
      }
      renderTable(table, found.models);
      total.textContent = found.total_pss_mb === null ? "" : `tritonserver ${fmt(found.server_pss_mb, 0)} MB + stubs: ${fmt(found.total_pss_mb / 1024, 2)} GB in all (PSS)`;
      status.textContent = `updated ${new Date().toLocaleTimeString()}, every ${found.interval_s} s`;
    } catch (error) {
      status.textContent = `no status: ${error.message}`;
      if (error.status === 401) return;
    }
    if (view.isConnected && location.hash.startsWith("#/fleet")) timer = setTimeout(tick, 2000);
  }
  await tick();
}

function cell(model, key) {
  const value = model[key];
  if (key === "instances") return value === null ? "ensemble" : value || "–";
  if (key === "pss_mb") return value === null || !model.instances ? "" : `${fmt(value, 0)} MB`;
  if (["avg_batch", "throughput"].includes(key)) return fmt(value, 1);
  if (["queue_ms", "compute_ms", "p50", "p99"].includes(key)) return value === undefined ? "–" : fmt(value, 2);
  return value;
}

function renderTable(table, models) {
  clear(
    table,
    h("thead", {}, h("tr", {}, COLUMNS.map(([, title]) => h("th", { scope: "col" }, title)))),
    h(
      "tbody",
      {},
      models.map((m) =>
        h(
          "tr",
          { "data-model": m.name, class: m.public ? "public" : "step" },
          COLUMNS.map(([key]) => h(key === "name" ? "th" : "td", key === "state" ? { class: `state ${String(m.state).toLowerCase()}` } : {}, cell(m, key))),
        ),
      ),
    ),
  );
}
