// The prompts (points and a box), their undo history, and the /segment call they make.
import { drawPrompts, render } from "./draw.js";
import { addTiming, api, attempt } from "./feedback.js";
import { decodeRle } from "./masks.js";
import { $, state } from "./page.js";
import { setView } from "./views.js";

export function copyPrompts(p) {
  return { points: p.points.map((xy) => [...xy]), labels: [...p.labels], box: p.box && [...p.box] };
}

export function emptyPrompts() {
  return { points: [], labels: [], box: null };
}

function hasPrompts(p = state.prompts) {
  return p.points.length > 0 || p.box !== null;
}

export function changePrompts(change) {
  if (!state.image) return;
  state.history.push(copyPrompts(state.prompts));
  change(state.prompts);
  setView("prompt");
  segment();
}

export function undo() {
  if (!state.history.length) return;
  state.prompts = state.history.pop();
  segment();
}

export function clearPrompts() {
  if (hasPrompts()) state.history.push(copyPrompts(state.prompts));
  state.prompts = emptyPrompts();
  state.logitsId = null;
  segment();
}

export async function segment() {
  drawPrompts();
  state.inFlight?.abort();
  state.inFlight = null;
  if (!state.image || !hasPrompts()) {
    state.answer = null;
    render();
    return;
  }
  const { points, labels, box } = state.prompts;
  const body = {
    embedding_id: state.image.embeddingId,
    points, labels, boxes: box ? [box] : [],
    multimask: $("multimask").checked,
    format: "rle",
  };
  if ($("refine").checked && state.logitsId) {
    // The candidate on screen, not the best-scored one the service would take by default.
    body.mask_input_id = state.logitsId;
    body.mask_input_index = state.selected;
  }
  const controller = new AbortController();
  state.inFlight = controller;
  const outcome = await attempt(() => api.segment(body, controller.signal));
  if (!outcome || controller.signal.aborted) return;
  state.inFlight = null;
  const { result, ms } = outcome;
  addTiming({ label: "decode", ms, ok: true, note: `${result.masks.length} masks` });
  state.answer = {
    ...result,
    masks: result.masks.map((m) => ({ ...m, mask: decodeRle(m.segmentation) })),
  };
  state.logitsId = result.logits_id;
  state.selected = bestIndex(result.masks);
  state.segmentCalls += 1;
  render();
}

function bestIndex(masks) {
  return masks.reduce((best, m, i) => (m.score > masks[best].score ? i : best), 0);
}

export function nextCandidate() {
  const masks = state.answer?.masks;
  if (!masks || masks.length < 2) return;
  const order = masks.map((_, i) => i).sort((a, b) => masks[b].score - masks[a].score);
  state.selected = order[(order.indexOf(state.selected) + 1) % order.length];
  render();
}
