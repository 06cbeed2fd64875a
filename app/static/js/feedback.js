// Feedback on the calls to the service: errors, round-trip timings, the spinner, and the
// API client that reports its timings here.
import { Api, ApiError } from "./api.js";
import { $ } from "./page.js";
import { showModelState } from "./status.js";

export function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

export function hideError() {
  $("error").hidden = true;
}

export function addTiming({ label, ms, ok, note }) {
  const item = document.createElement("li");
  item.textContent = `${label}: ${Math.round(ms)} ms${note ? ` (${note})` : ""}`;
  item.classList.toggle("failed", !ok);
  $("timings").prepend(item);
  while ($("timings").children.length > 12) $("timings").lastChild.remove();
}

/** Shows the spinner with `text`, or hides it (null); the drop-zone text steps aside meanwhile. */
export function spinner(text) {
  $("spinner").hidden = text === null;
  $("stage-area").classList.toggle("busy", text !== null);
  $("spinner-text").textContent = text || "";
}

/** Runs an API call, reporting its error on the page; returns undefined on failure. */
export async function attempt(call) {
  try {
    const outcome = await call();
    hideError();
    return outcome;
  } catch (err) {
    if (err.name === "AbortError") return undefined;
    if (err.kind === "failed" || err.kind === "loading") showModelState(err.kind, err.detail);
    if (err.kind === "failed") return undefined; // the model banner says it, and stays
    showError(err instanceof ApiError ? err.message : `Unexpected error: ${err.message}`);
    if (!(err instanceof ApiError)) console.error(err);
    return undefined;
  }
}

export const api = new Api(() => $("api-key").value.trim(), addTiming);
