// Acknowledge buttons: posted with fetch so the page (and its live feed) stays; the row shows who acknowledged.
import { el } from "./live.js";

async function acknowledge(form) {
  const button = form.querySelector("button");
  button.disabled = true;
  const response = await fetch(form.action, {
    method: "POST", body: new FormData(form), headers: { Accept: "application/json" }, credentials: "same-origin",
  });
  if (!response.ok) { button.disabled = false; button.textContent = "Retry"; return; }
  const body = await response.json();
  const item = form.closest("[data-alert]");
  item.classList.add("acknowledged");
  const at = body.acknowledged_at ? body.acknowledged_at.slice(11, 19) : "";
  form.replaceWith(el("span", { class: "ack-done" }, `acknowledged by ${body.acknowledged_by} at ${at}`));
  document.dispatchEvent(new CustomEvent("alert-acknowledged", { detail: body }));
}

export function enhanceAckForms(root = document) {
  root.addEventListener("submit", (ev) => {
    const form = ev.target.closest(".ack-form");
    if (!form) return;
    ev.preventDefault();
    acknowledge(form).catch(() => form.submit());
  });
}
