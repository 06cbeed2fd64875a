// The model's state as the service tells it: GET /readyz when the page loads, again every
// second while the model loads; a 503 from any call updates it too (feedback.js).
import { detailOf, sentence, unavailability } from "./api.js";
import { $ } from "./page.js";

const POLL_MS = 1000;
const BADGES = {
  checking: "Checking the model…",
  loading: "Loading the model…",
  ready: "Model ready",
  failed: "The model failed to load",
  unreachable: "Server unreachable",
};

let poll = null;

/**
 * Shows the model's state in the header; a model that failed to load also gets a banner in
 * the server's own words, which stays (the replica needs a restart).
 * @param {"checking" | "loading" | "ready" | "failed" | "unreachable"} state
 * @param {string} [detail] What the server said.
 */
export function showModelState(state, detail = "") {
  const badge = $("model-status");
  badge.dataset.state = state;
  badge.textContent = BADGES[state];
  badge.title = detail;
  $("model-banner").hidden = state !== "failed";
  $("model-banner").textContent = state === "failed" ? sentence(detail) : "";
  clearTimeout(poll);
  if (state === "loading" || state === "unreachable") poll = setTimeout(checkReadiness, POLL_MS);
}

/** Asks /readyz (no API key needed) and shows the answer. */
export async function checkReadiness() {
  let response;
  try {
    response = await fetch("/readyz", { cache: "no-store" });
  } catch (err) {
    showModelState("unreachable", err.message);
    return;
  }
  if (response.ok) {
    showModelState("ready");
    return;
  }
  let detail = "";
  try {
    detail = detailOf(await response.json());
  } catch {
    detail = `HTTP ${response.status}`;
  }
  // /readyz is 503 only while loading or once loading failed; anything else reads as loading.
  showModelState(unavailability(detail) === "failed" ? "failed" : "loading", detail);
}
