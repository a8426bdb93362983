// Chart.js (served from vendor/, installed from npm) with the dashboard's colours.
const Chart = window.Chart;

export const COLORS = { websocket: "#4da3ff", socketio: "#a78bfa", rest: "#2fbf71", mqtt: "#f0a830" };
const FALLBACK = ["#4da3ff", "#2fbf71", "#f0a830", "#e5484d", "#a78bfa", "#22d3ee"];

if (Chart) {
  Chart.defaults.color = "#8b9bb0";
  Chart.defaults.borderColor = "#2a3544";
  Chart.defaults.font.family = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  Chart.defaults.font.size = Math.round(parseFloat(getComputedStyle(document.documentElement).fontSize) * 0.8);  // grows on wall screens
  Chart.defaults.animation.duration = 300;
  Chart.defaults.maintainAspectRatio = false;
}

export function colorFor(name, i = 0) {
  return COLORS[name] || FALLBACK[i % FALLBACK.length];
}

export function chart(id, config) {
  const canvas = document.getElementById(id);
  if (!canvas || !Chart) return null;
  const box = document.createElement("div");  // Chart.js sizes itself to its parent: give it one of its own
  box.style.position = "relative";
  box.style.height = `${(canvas.getAttribute("height") || 200) / 15}rem`;  // in rem: taller on wall screens
  canvas.replaceWith(box);
  box.append(canvas);
  return new Chart(canvas, config);
}

export function lineSeries(label, color) {
  return { label, data: [], borderColor: color, backgroundColor: color + "33", fill: true, tension: 0.25,
           pointRadius: 0, borderWidth: 2, spanGaps: true };
}

export function readJSON(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}
