// The analytics page: rollup series and the protocol mix.
import { chart, colorFor, readJSON } from "./charts.js";

function perPeriod(id, data) {
  if (!data) return;
  chart(id, { type: "bar", data: { labels: data.labels, datasets: [
    { label: "detections", data: data.detections, backgroundColor: "#4da3ff" },
    { label: "unique plates", data: data.unique_plates, backgroundColor: "#2fbf71" }] },
    options: { scales: { x: { ticks: { maxTicksLimit: 16, maxRotation: 0 } }, y: { beginAtZero: true } } } });
}

perPeriod("chart-hourly", readJSON("hourly-data"));
perPeriod("chart-daily", readJSON("daily-data"));
const protocols = readJSON("protocol-data") || [];
const names = protocols.map((p) => p.protocol);
const colors = names.map((n, i) => colorFor(n, i));
chart("chart-mix", { type: "doughnut", data: { labels: names, datasets: [{ data: protocols.map((p) => p.accepted + p.rejected),
  backgroundColor: colors, borderWidth: 0 }] }, options: { cutout: "62%", plugins: { legend: { position: "right" } } } });
chart("chart-p95", { type: "bar", data: { labels: names, datasets: [{ label: "p95 ms", data: protocols.map((p) => p.p95_ms),
  backgroundColor: colors }] }, options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } } });
