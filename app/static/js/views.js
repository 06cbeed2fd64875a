// The output views: the prompt's masks, everything mode (/masks) and edges (/edges).
import { render } from "./draw.js";
import { addTiming, api, attempt, spinner } from "./feedback.js";
import { decodeRle } from "./masks.js";
import { $, state } from "./page.js";

function numberInput(id) {
  return Number($(id).value);
}

async function showEverything() {
  const params = {
    embedding_id: state.image.embeddingId,
    points_per_side: numberInput("points-per-side"),
    pred_iou_thresh: numberInput("pred-iou-thresh"),
    stability_score_thresh: numberInput("stability-score-thresh"),
    box_nms_thresh: numberInput("box-nms-thresh"),
  };
  const key = JSON.stringify(params);
  if (state.everything?.key !== key) {
    spinner("Segmenting everything…");
    const outcome = await attempt(() => api.masks(params));
    spinner(null);
    if (!outcome || params.embedding_id !== state.image.embeddingId) return;
    const { result, ms } = outcome;
    addTiming({ label: "everything", ms, ok: true, note: `${result.masks.length} masks` });
    const masks = result.masks
      .map((m) => ({ ...m, score: m.predicted_iou, mask: decodeRle(m.segmentation) }))
      .sort((a, b) => b.area - a.area); // small masks on top of large ones
    state.everything = { key, masks };
  }
  render();
}

async function showEdges() {
  const params = {
    embedding_id: state.image.embeddingId,
    points_per_side: numberInput("edge-points-per-side"),
  };
  const key = JSON.stringify(params);
  if (state.edges?.key !== key) {
    spinner("Detecting edges…");
    const outcome = await attempt(() => api.edges(params));
    spinner(null);
    if (!outcome || params.embedding_id !== state.image.embeddingId) return;
    addTiming({ label: "edges", ms: outcome.ms, ok: true });
    state.edges = { key, bitmap: await createImageBitmap(outcome.result) };
  }
  render();
}

export function setView(view) {
  state.view = view;
  document.querySelector(`input[name="view"][value="${view}"]`).checked = true;
  if (!state.image) return;
  if (view === "everything") showEverything();
  else if (view === "edges") showEdges();
  else render();
}
