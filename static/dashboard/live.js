// The dashboard's live stream: one WebSocket to /ws/dashboard/, reconnected with backoff.
// Frames are {"type": "events", "events": [...]} (transport/live.py); handlers get each event.
// Each frame is answered with {"type": "next"} once handled: the server sends only a few frames ahead of the
// answers and closes a dashboard that stops answering (transport/ws/dashboard.py).

const handlers = new Set();
let socket = null;
let delay = 500;

function indicator(state) {
  const el = document.getElementById("live-indicator");
  if (el) el.dataset.state = state;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/dashboard/`);
  socket.addEventListener("open", () => { delay = 500; indicator("on"); });
  socket.addEventListener("message", (msg) => {
    const frame = JSON.parse(msg.data);
    if (frame.type !== "events") return;
    for (const event of frame.events) {
      for (const handle of handlers) {
        try { handle(event); } catch (err) { console.error("live handler failed", err); }
      }
    }
    if (msg.target.readyState === WebSocket.OPEN) msg.target.send('{"type":"next"}');
  });
  socket.addEventListener("close", (ev) => {
    if (ev.code === 4401) { indicator("off"); location.reload(); return; }  // session ended: the login page
    indicator("retrying");
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 15000);
  });
}

export function onEvent(handler) {
  handlers.add(handler);
  if (!socket) connect();
}

export function csrfToken() {
  const field = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (field) return field.value;
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  return cookie ? cookie.slice("csrftoken=".length) : "";
}

// Build an element: el("span", {class: "plate"}, "AB123CD"). Text is always set as text, never as HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function clock(iso) {
  return iso ? iso.slice(11, 19) : "";
}
