// The overview: the live feed, the device grid and counts, open alerts, and the communication monitor's charts.
import { onEvent, el, clock, csrfToken } from "./live.js";
import { enhanceAckForms } from "./ack.js";
import { chart, colorFor, readJSON } from "./charts.js";

const FEED_MAX = 50;
const MONITOR_EVERY_MS = 15000;
const feed = document.getElementById("feed");
const grid = document.getElementById("device-grid");
const alertList = document.getElementById("open-alerts");

function deviceName(id) {
  const tile = grid.querySelector(`[data-device="${CSS.escape(id)}"] .tile-name`);
  return tile && tile.textContent ? tile.textContent : id;
}

function addRead(e) {
  if (feed.querySelector(`[data-message="${CSS.escape(e.message_id)}"]`)) return;
  feed.querySelector(".feed-empty")?.remove();
  const thumb = e.image_ref
    ? el("img", { class: "thumb", src: `/media/images/${e.image_ref}/thumbnail/`, alt: `crop of ${e.plate}` })
    : el("span", { class: "thumb thumb-none", "aria-hidden": "true" }, "no image");
  const item = el("li", { class: "feed-item fresh", "data-message": e.message_id },
    thumb,
    el("span", { class: "plate" }, e.plate),
    el("span", { class: "feed-meta" },
      el("a", { href: `/dashboard/devices/${encodeURIComponent(e.device_id)}/` }, deviceName(e.device_id)),
      el("span", { class: "muted" }, e.device_id)),
    el("time", { class: "feed-time", datetime: e.captured_at }, clock(e.captured_at)),
    el("span", { class: `badge via-${e.via}` }, e.via));
  feed.prepend(item);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
}

function recount() {
  const counts = { online: 0, degraded: 0, offline: 0 };
  for (const tile of grid.querySelectorAll("[data-state]")) counts[tile.dataset.state] += 1;
  for (const [state, n] of Object.entries(counts)) document.getElementById(`count-${state}`).textContent = n;
}

function setState(e) {
  const tile = grid.querySelector(`[data-device="${CSS.escape(e.device_id)}"]`);
  if (!tile) return;
  // The event says online or not; a device that stays online keeps its degraded mark until the next load.
  const state = !e.online ? "offline" : tile.dataset.state === "degraded" ? "degraded" : "online";
  tile.dataset.state = state;
  tile.className = `tile state-${state}`;
  recount();
}

function addAlert(e) {
  if (e.id === undefined || !e.watchlist) return;  // device_offline notices show on the grid instead
  alertList.querySelector(".empty")?.remove();
  const form = el("form", { method: "post", action: `/dashboard/alerts/${e.id}/ack/`, class: "ack-form" },
    el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: csrfToken() }),
    el("button", { class: "ack", type: "submit" }, "Acknowledge"));
  alertList.prepend(el("li", { class: `alert-item prio-${e.priority} fresh`, "data-alert": e.id },
    el("span", { class: "plate small-plate" }, e.plate),
    el("span", { class: "alert-what" }, el("strong", {}, e.watchlist), " at ", deviceName(e.device_id),
      e.note ? ` · ${e.note}` : "", el("br"), el("time", { class: "muted small", datetime: e.captured_at }, clock(e.captured_at))),
    el("span", { class: "alert-state" }, form)));
  const count = document.getElementById("count-alerts");
  count.textContent = Number(count.textContent) + 1;
}

document.addEventListener("alert-acknowledged", () => {
  const count = document.getElementById("count-alerts");
  count.textContent = Math.max(0, Number(count.textContent) - 1);
});

// --- the communication monitor -----------------------------------------------------------------
const pct = (v) => (v === null || v === undefined ? null : Math.round(v * 1000) / 10);
const share = chart("chart-share", { type: "doughnut", data: { labels: [], datasets: [{ data: [], backgroundColor: [], borderWidth: 0 }] },
  options: { cutout: "62%", plugins: { legend: { position: "right" } } } });
const success = chart("chart-success", { type: "bar", data: { labels: [], datasets: [{ label: "success %", data: [], backgroundColor: [] }] },
  options: { scales: { y: { min: 0, max: 100 } }, plugins: { legend: { display: false } } } });
const latency = chart("chart-latency", { type: "bar", data: { labels: [], datasets: [
  { label: "average", data: [], backgroundColor: "#4da3ff" }, { label: "p95", data: [], backgroundColor: "#f0a830" }] },
  options: { scales: { y: { beginAtZero: true } } } });

function showMonitor(protocols) {
  const names = Object.keys(protocols);
  const colors = names.map((n, i) => colorFor(n, i));
  if (share) {
    share.data.labels = names;
    share.data.datasets[0].data = names.map((n) => protocols[n].messages);
    share.data.datasets[0].backgroundColor = colors;
    share.update();
  }
  if (success) {
    success.data.labels = names;
    success.data.datasets[0].data = names.map((n) => pct(protocols[n].success_rate));
    success.data.datasets[0].backgroundColor = colors;
    success.update();
  }
  if (latency) {
    latency.data.labels = names;
    latency.data.datasets[0].data = names.map((n) => protocols[n].avg_latency_ms);
    latency.data.datasets[1].data = names.map((n) => protocols[n].p95_latency_ms);
    latency.update();
  }
}

async function refreshMonitor() {
  const response = await fetch("/api/v1/stats/protocols/?window=1h", { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.ok) showMonitor((await response.json()).protocols);
}

showMonitor(readJSON("monitor-data") || {});
setInterval(() => refreshMonitor().catch(() => {}), MONITOR_EVERY_MS);
enhanceAckForms();
onEvent((e) => {
  if (e.type === "detection") addRead(e);
  else if (e.type === "device_status") setState(e);
  else if (e.type === "alert") addAlert(e);
});
