// The devices list: state pills follow device_status events.
import { onEvent } from "./live.js";

onEvent((e) => {
  if (e.type !== "device_status") return;
  const pill = document.querySelector(`[data-state-of="${CSS.escape(e.device_id)}"]`);
  if (!pill) return;
  const state = !e.online ? "offline" : pill.textContent.trim() === "degraded" ? "degraded" : "online";
  pill.textContent = state;
  pill.className = `state-pill state-${state}`;
});
