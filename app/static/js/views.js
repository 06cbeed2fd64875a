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
    return { masks };
  };
  return showCached("everything", params, "Segmenting everything…", (p) => api.masks(p), keep);
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
  if (!state.image) return;
  if (view === "everything") showEverything();
  else if (view === "edges") showEdges();
  else render();
}
