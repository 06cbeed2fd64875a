// The output views: the prompt's masks, everything mode (/masks) and edges (/edges).
import { render } from "./draw.js";
import { addTiming, api, attempt, spinner } from "./feedback.js";
import { decodeRle } from "./masks.js";
import { $, state } from "./page.js";

function numberInput(id) {
  return Number($(id).value);
}

// Answers `call(params)` from state[slot] when the same params were asked before; otherwise asks
// the service, and drops the answer if another image was opened meanwhile.
async function showCached(slot, params, message, call, keep) {
  const key = JSON.stringify(params);
  if (state[slot]?.key !== key) {
    spinner(message);
    const outcome = await attempt(() => call(params));
    spinner(null);
    if (!outcome || params.embedding_id !== state.image.embeddingId) return;
    state[slot] = { key, ...(await keep(outcome)) };
  }
  render();
  showViewStatus();
}

function showEverything() {
  const params = {
    embedding_id: state.image.embeddingId,
    points_per_side: numberInput("points-per-side"),
    pred_iou_thresh: numberInput("pred-iou-thresh"),
    stability_score_thresh: numberInput("stability-score-thresh"),
    box_nms_thresh: numberInput("box-nms-thresh"),
  };
  const keep = ({ result, ms }) => {
    addTiming({ label: "everything", ms, ok: true, note: `${result.masks.length} masks` });
    const masks = result.masks
      .map((m) => ({ ...m, score: m.predicted_iou, mask: decodeRle(m.segmentation) }))
      .sort((a, b) => b.area - a.area); // small masks on top of large ones
    return { masks, params };
  };
  return showCached("everything", params, "Segmenting everything…", (p) => api.masks(p), keep);
}

/** What to say when no mask of everything mode passed the generator's filters. */
export function emptyMessage({ pred_iou_thresh: iou, stability_score_thresh: stability }) {
  const lower = [];
  if (iou > 0) lower.push(`the predicted IoU threshold (now ${iou})`);
  if (stability > 0) lower.push(`the stability threshold (now ${stability})`);
  if (!lower.length) return "No mask found even with both thresholds at 0: raise the points per side.";
  return `No mask passed the filters: lower ${lower.join(" or ")} under Advanced.`;
}

/** Says, under the view buttons, when everything mode found nothing. */
function showViewStatus() {
  const empty = state.view === "everything" && state.everything?.masks.length === 0;
  $("view-status").hidden = !empty;
  $("view-status").textContent = empty ? emptyMessage(state.everything.params) : "";
  if (empty) $("advanced").open = true;
}

function showEdges() {
  const params = {
    embedding_id: state.image.embeddingId,
    points_per_side: numberInput("edge-points-per-side"),
  };
  const keep = async ({ result, ms }) => {
    addTiming({ label: "edges", ms, ok: true });
    return { bitmap: await createImageBitmap(result) };
  };
  return showCached("edges", params, "Detecting edges…", (p) => api.edges(p), keep);
}

export function setView(view) {
  state.view = view;
  document.querySelector(`input[name="view"][value="${view}"]`).checked = true;
  showViewStatus();
  if (!state.image) return;
  if (view === "everything") showEverything();
  else if (view === "edges") showEdges();
  else render();
}
