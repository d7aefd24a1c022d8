// ComfyUMe: your place in the workshop queue, always visible.
//
// The host sends `comfyume.queue` on the editor's websocket whenever your
// waiting jobs move: [{number, position, ahead, eta_seconds, cold}], best
// placed first. This extension shows the best one as a small badge in the
// bottom-left corner ("2nd in queue · starts in ~1 min") and hides it when
// nothing of yours is waiting. The position is an estimate: the workshop's
// scheduling policy decides the real order.

const comfy = window.comfyAPI || {};
const api = comfy.api?.api ?? (await import("../../scripts/api.js")).api;
const app = comfy.app?.app ?? (await import("../../scripts/app.js")).app;

function ordinal(n) {
  const s = ["th", "st", "nd", "rd"];
  const v = n % 100;
  return n + (s[(v - 20) % 10] || s[v] || s[0]);
}

function wait(seconds) {
  if (seconds < 45) return "starts in under a minute";
  const minutes = Math.round(seconds / 60);
  return minutes === 1 ? "starts in ~1 min" : `starts in ~${minutes} min`;
}

function badge() {
  let el = document.getElementById("comfyume-queue");
  if (!el) {
    el = document.createElement("div");
    el.id = "comfyume-queue";
    el.setAttribute("role", "status");
    el.setAttribute("aria-live", "polite");
    Object.assign(el.style, {
      position: "fixed",
      left: "12px",
      bottom: "12px",
      zIndex: 10000,
      padding: "6px 12px",
      borderRadius: "14px",
      background: "rgba(20, 20, 28, 0.88)",
      color: "#f2f2f2",
      font: "13px/1.4 system-ui, sans-serif",
      boxShadow: "0 2px 8px rgba(0,0,0,0.35)",
      pointerEvents: "none",
      display: "none",
    });
    document.body.appendChild(el);
  }
  return el;
}

function show(jobs) {
  const el = badge();
  if (!jobs || jobs.length === 0) {
    el.style.display = "none";
    el.textContent = "";
    return;
  }
  const best = jobs[0];
  const more = jobs.length > 1 ? ` (+${jobs.length - 1} more waiting)` : "";
  const cold = best.cold ? " · GPUs warming up" : "";
  el.textContent = `Your job: ${ordinal(best.position)} in queue · ${wait(best.eta_seconds)}${cold}${more}`;
  el.dataset.position = String(best.position);
  el.dataset.eta = String(best.eta_seconds);
  el.style.display = "block";
}

app.registerExtension({
  name: "comfyume.queue",
  setup() {
    api.addEventListener("comfyume.queue", (event) => show(event.detail?.jobs));
  },
});
