// The device page: health charts (new reports appear live), command states, and the live video viewer.
import { onEvent, el, clock } from "./live.js";
import { chart, lineSeries, readJSON } from "./charts.js";

const MAX_POINTS = 300;
const deviceId = document.querySelector("[data-state-of]")?.dataset.stateOf;
const timeAxis = { ticks: { maxTicksLimit: 6, maxRotation: 0 } };

function healthChart(id, label, color, field, scale = (v) => v) {
  const c = chart(id, { type: "line", data: { labels: [], datasets: [lineSeries(label, color)] },
    options: { plugins: { legend: { display: false } }, scales: { x: timeAxis, y: { beginAtZero: true } } } });
  return { c, field, scale };
}

const series = [
  healthChart("chart-cpu", "CPU %", "#4da3ff", "cpu_percent"),
  healthChart("chart-temp", "°C", "#e5484d", "temperature_c"),
  healthChart("chart-latency", "ms", "#f0a830", "latency_ms"),
  healthChart("chart-loss", "%", "#a78bfa", "packet_loss", (v) => v * 100),  // reported as a fraction
];

function addHealth(point) {
  for (const { c, field, scale } of series) {
    if (!c) continue;
    c.data.labels.push(clock(point.reported_at).slice(0, 5));
    c.data.datasets[0].data.push(point[field] === null || point[field] === undefined ? null : scale(point[field]));
    if (c.data.labels.length > MAX_POINTS) { c.data.labels.shift(); c.data.datasets[0].data.shift(); }
  }
}

function redraw() { for (const { c } of series) c?.update(); }

for (const point of readJSON("health-data") || []) addHealth(point);
redraw();

// --- commands ------------------------------------------------------------------------------------
const commandsBody = document.querySelector("#commands tbody");

function commandState(e) {
  let row = commandsBody.querySelector(`[data-command="${CSS.escape(e.command_id)}"]`);
  if (!row) {
    commandsBody.querySelector(".empty")?.remove();
    row = el("tr", { "data-command": e.command_id },
      el("td", {}, el("time", {}, clock(new Date().toISOString()))),
      el("td", {}, el("strong", {}, e.action || "")), el("td", {}, ""),
      el("td", {}, el("span", { class: "cmd-state", "data-command-state": true }, "")),
      el("td", { class: "small muted", "data-command-history": true }, ""));
    commandsBody.prepend(row);
  }
  const state = row.querySelector("[data-command-state]");
  state.textContent = e.state;
  state.className = `cmd-state cmd-${e.state}`;
  const history = row.querySelector("[data-command-history]");
  const steps = history.textContent.trim() ? history.textContent.trim().split(" → ") : [];
  if (steps.length && steps[steps.length - 1].startsWith(`${e.state} `)) return;  // the answer and the state change both say so
  steps.push(`${e.state}${e.transport ? ` (${e.transport})` : ""} ${clock(e.at || new Date().toISOString())}`);
  history.textContent = steps.join(" → ");
}

onEvent((e) => {
  if (e.device_id !== deviceId) return;
  if (e.type === "health") {
    addHealth({ reported_at: e.reported_at, cpu_percent: e.cpu_percent, temperature_c: e.temperature_c,
                latency_ms: e.network?.latency_ms, packet_loss: e.network?.packet_loss });
    redraw();
  } else if (e.type === "command") {
    commandState(e);
  } else if (e.type === "device_status") {
    const pill = document.querySelector(`[data-state-of="${CSS.escape(deviceId)}"]`);
    pill.textContent = e.online ? "online" : "offline";
    pill.className = `state-pill state-${e.online ? "online" : "offline"}`;
  }
});

// --- live video: /ws/video/<id>/ sends one JPEG per message; we ask for the next after showing one ----------
const video = document.getElementById("video");
if (video) {
  const img = document.getElementById("video-frame");
  const status = document.getElementById("video-status");
  const toggle = document.getElementById("video-toggle");
  let socket = null;
  let url = null;

  function stop() {
    socket?.close();
    socket = null;
    toggle.textContent = "Watch live";
  }

  function start() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/video/${encodeURIComponent(video.dataset.device)}/`);
    socket.binaryType = "blob";
    status.textContent = "Waiting for the camera's first frame…";
    toggle.textContent = "Stop";
    socket.addEventListener("message", (msg) => {
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(msg.data);
      img.onload = () => socket?.send(JSON.stringify({ type: "next" }));
      img.src = url;
      img.hidden = false;
      status.textContent = `Live · ${new Date().toLocaleTimeString()}`;
    });
    socket.addEventListener("close", () => { status.textContent = "Stream closed."; stop(); });
  }

  toggle.addEventListener("click", () => (socket ? stop() : start()));
}

// --- protocol switches arrive live too -------------------------------------------------------------
const switches = document.getElementById("switches");
onEvent((e) => {
  if (e.type !== "protocol_switch" || e.device_id !== deviceId) return;
  switches.querySelector(".empty")?.remove();
  switches.prepend(el("li", {}, el("time", { datetime: e.at }, clock(e.at)), " ",
    el("span", { class: `badge via-${e.from}` }, e.from || "—"), " → ", el("span", { class: `badge via-${e.to}` }, e.to),
    " ", el("span", { class: "muted small" }, e.reason || "")));
});
