// The demo page: open an image, prompt with clicks and boxes, show and export the masks.
import { Api, ApiError } from "./api.js";
import {
  clearCanvas, colour, cocoJson, decodeRle, download, maskPng, paintEdges, paintMasks,
} from "./masks.js";

const $ = (id) => document.getElementById(id);
const area = $("stage-area");
const imageCanvas = $("image-canvas");
const overlay = $("overlay");
const promptLayer = $("prompts");
const SVG = "http://www.w3.org/2000/svg";
const DRAG_PIXELS = 5; // screen pixels a press must move to become a box

const state = {
  image: null, // {name, width, height, embeddingId}
  prompts: { points: [], labels: [], box: null }, // XY / XYXY pixels of the image
  history: [], // earlier prompts, for undo
  answer: null, // the /segment answer for the prompts, masks decoded
  selected: 0, // index into answer.masks
  logitsId: null, // of the last answer, for refining
  view: "prompt", // "prompt" | "everything" | "edges"
  everything: null, // {key, masks} of /masks
  edges: null, // {key, bitmap} of /edges
  segmentCalls: 0,
  inFlight: null, // AbortController of the /segment call under way
};

const api = new Api(() => $("api-key").value.trim(), addTiming);

// ---- messages, timings, spinner -------------------------------------------------------

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

function addTiming({ label, ms, ok, note }) {
  const item = document.createElement("li");
  item.textContent = `${label}: ${Math.round(ms)} ms${note ? ` (${note})` : ""}`;
  item.classList.toggle("failed", !ok);
  $("timings").prepend(item);
  while ($("timings").children.length > 12) $("timings").lastChild.remove();
}

function spinner(text) {
  $("spinner").hidden = text === null;
  $("spinner-text").textContent = text || "";
}

/** Runs an API call, reporting its error on the page; returns undefined on failure. */
async function attempt(call) {
  try {
    const outcome = await call();
    hideError();
    return outcome;
  } catch (err) {
    if (err.name === "AbortError") return undefined;
    showError(err instanceof ApiError ? err.message : `Unexpected error: ${err.message}`);
    if (!(err instanceof ApiError)) console.error(err);
    return undefined;
  }
}

// ---- opening an image ----------------------------------------------------------------

async function openImage(file) {
  if (!file) return;
  hideError();
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    bitmap = null; // the server may still read it (TIFF); it answers with the size
  }
  const started = performance.now();
  const timer = setInterval(() => {
    spinner(`Encoding… ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }, 100);
  spinner("Encoding…");
  $("encode-status").textContent = `Encoding ${file.name}…`;
  const outcome = await attempt(() => api.embed(file));
  clearInterval(timer);
  spinner(null);
  if (!outcome) {
    $("encode-status").textContent = state.image
      ? `Still showing ${state.image.name}.`
      : "No image: the server did not accept it.";
    return;
  }
  const { result, ms } = outcome;
  addTiming({ label: "encode", ms, ok: true, note: result.cached ? "cached" : undefined });
  state.image = {
    name: file.name || "image", width: result.width, height: result.height,
    embeddingId: result.embedding_id,
  };
  for (const canvas of [imageCanvas, overlay]) {
    canvas.width = result.width;
    canvas.height = result.height;
  }
  const context = imageCanvas.getContext("2d");
  if (bitmap) {
    context.drawImage(bitmap, 0, 0, result.width, result.height);
  } else {
    context.fillStyle = "#888";
    context.fillRect(0, 0, result.width, result.height);
  }
  promptLayer.setAttribute("viewBox", `0 0 ${result.width} ${result.height}`);
  $("stage").hidden = false;
  $("drop-hint").hidden = true;
  fitStage();
  $("encode-status").textContent =
    `${state.image.name}: ${result.width}×${result.height}, encoded in ${Math.round(ms)} ms` +
    (result.cached ? " (cached)" : "");
  overlay.dataset.image = result.embedding_id;
  state.everything = null;
  state.edges = null;
  state.history = [];
  state.prompts = { points: [], labels: [], box: null };
  state.logitsId = null;
  setView("prompt");
  segment();
}

async function openSample(sample) {
  const outcome = await attempt(async () => {
    const response = await fetch(sample.url);
    if (!response.ok) throw new ApiError(`Cannot load the sample ${sample.name}.`, response.status);
    return response.blob();
  });
  if (outcome) await openImage(new File([outcome], `${sample.name}.jpg`, { type: outcome.type }));
}

async function listSamples() {
  const response = await fetch("/samples");
  if (!response.ok) return;
  for (const sample of await response.json()) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = sample.name;
    button.title = `Open the sample photo: ${sample.title}`;
    button.dataset.sample = sample.name;
    button.addEventListener("click", () => openSample(sample));
    $("samples").append(button);
  }
}

// ---- prompts and /segment ------------------------------------------------------------

function copyPrompts(p) {
  return { points: p.points.map((xy) => [...xy]), labels: [...p.labels], box: p.box && [...p.box] };
}

function hasPrompts(p = state.prompts) {
  return p.points.length > 0 || p.box !== null;
}

function changePrompts(change) {
  if (!state.image) return;
  state.history.push(copyPrompts(state.prompts));
  change(state.prompts);
  setView("prompt");
  segment();
}

function undo() {
  if (!state.history.length) return;
  state.prompts = state.history.pop();
  segment();
}

function clearPrompts() {
  if (hasPrompts()) state.history.push(copyPrompts(state.prompts));
  state.prompts = { points: [], labels: [], box: null };
  state.logitsId = null;
  segment();
}

async function segment() {
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
  if ($("refine").checked && state.logitsId) body.mask_input_id = state.logitsId;
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

function nextCandidate() {
  const masks = state.answer?.masks;
  if (!masks || masks.length < 2) return;
  const order = masks.map((_, i) => i).sort((a, b) => masks[b].score - masks[a].score);
  state.selected = order[(order.indexOf(state.selected) + 1) % order.length];
  render();
}

// ---- everything and edges ------------------------------------------------------------

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

function setView(view) {
  state.view = view;
  document.querySelector(`input[name="view"][value="${view}"]`).checked = true;
  if (!state.image) return;
  if (view === "everything") showEverything();
  else if (view === "edges") showEdges();
  else render();
}

// ---- drawing -------------------------------------------------------------------------

function render() {
  const masks = state.answer?.masks || [];
  overlay.dataset.view = state.view;
  promptLayer.classList.toggle("off", state.view !== "prompt");
  if (state.view === "everything" && state.everything) {
    const layers = state.everything.masks.map((m, i) => ({ mask: m.mask, rgb: colour(i) }));
    paintMasks(overlay, layers, 140);
    overlay.dataset.maskCount = String(layers.length);
  } else if (state.view === "edges" && state.edges) {
    paintEdges(overlay, state.edges.bitmap);
  } else if (state.view === "prompt" && masks.length) {
    paintMasks(overlay, [{ mask: masks[state.selected].mask, rgb: [30, 144, 255] }]);
  } else {
    clearCanvas(overlay);
  }
  // What the overlay shows, for people using devtools and for the browser test.
  overlay.dataset.logitsId = state.answer?.logits_id || "";
  overlay.dataset.maskIndex = masks.length ? String(state.selected) : "";
  overlay.dataset.segmentCalls = String(state.segmentCalls);
  renderCandidates(masks);
  $("download-png").disabled = !masks.length;
  $("download-coco").disabled = !(masks.length || state.everything?.masks.length);
  $("undo").disabled = !state.history.length;
}

function renderCandidates(masks) {
  $("candidates").hidden = masks.length < 2;
  const list = $("candidate-list");
  list.replaceChildren();
  const order = masks.map((_, i) => i).sort((a, b) => masks[b].score - masks[a].score);
  for (const i of order) {
    const label = document.createElement("label");
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = "candidate";
    radio.value = String(i);
    radio.checked = i === state.selected;
    radio.addEventListener("change", () => {
      state.selected = i;
      render();
    });
    label.append(radio, ` #${i + 1}  score ${masks[i].score.toFixed(3)}  (${masks[i].area} px)`);
    list.append(label);
  }
}

const sideBySide = window.matchMedia("(min-width: 801px)");

/** Scales the image to the space it has (up to 4x); the canvas's height follows its width. */
function fitStage() {
  if (!state.image) return;
  const padding = 32;
  const width = area.clientWidth - padding;
  // Side by side the image area has the window's height; stacked under the controls, it scrolls.
  const height = (sideBySide.matches ? area.clientHeight : window.innerHeight) - padding;
  const scale = Math.min(width / state.image.width, Math.max(height, 200) / state.image.height, 4);
  imageCanvas.style.width = `${Math.floor(state.image.width * scale)}px`;
  drawPrompts();
}

function drawPrompts(dragBox = null) {
  const scale = state.image ? state.image.width / imageCanvas.getBoundingClientRect().width : 1;
  const shapes = [];
  const box = dragBox || state.prompts.box;
  if (box) {
    const rect = document.createElementNS(SVG, "rect");
    const [x0, y0, x1, y1] = box;
    for (const [k, v] of Object.entries({ x: x0, y: y0, width: x1 - x0, height: y1 - y0 })) {
      rect.setAttribute(k, v);
    }
    rect.setAttribute("stroke-width", 2 * scale);
    rect.setAttribute("stroke-dasharray", dragBox ? `${6 * scale} ${4 * scale}` : "none");
    shapes.push(rect);
  }
  state.prompts.points.forEach(([x, y], i) => {
    const circle = document.createElementNS(SVG, "circle");
    circle.setAttribute("cx", x);
    circle.setAttribute("cy", y);
    circle.setAttribute("r", 6 * scale);
    circle.setAttribute("stroke-width", 2 * scale);
    circle.setAttribute("fill", state.prompts.labels[i] ? "#22c55e" : "#ef4444");
    shapes.push(circle);
  });
  promptLayer.replaceChildren(...shapes);
}

// ---- pointer, keyboard, drag and drop ------------------------------------------------

/** Screen position of a pointer event -> XY pixels of the image, clamped to it. */
function toImage(event) {
  const r = imageCanvas.getBoundingClientRect();
  const x = ((event.clientX - r.left) / r.width) * state.image.width;
  const y = ((event.clientY - r.top) / r.height) * state.image.height;
  const clamp = (v, hi) => Math.round(Math.min(Math.max(v, 0), hi) * 10) / 10;
  return [clamp(x, state.image.width), clamp(y, state.image.height)];
}

let press = null; // {start: [x, y] image pixels, client: [x, y], negative, box}

imageCanvas.addEventListener("contextmenu", (event) => event.preventDefault());
imageCanvas.addEventListener("pointerdown", (event) => {
  if (!state.image || (event.button !== 0 && event.button !== 2)) return;
  imageCanvas.setPointerCapture(event.pointerId);
  press = {
    start: toImage(event), client: [event.clientX, event.clientY],
    negative: event.button === 2 || event.shiftKey, box: null,
  };
});
imageCanvas.addEventListener("pointermove", (event) => {
  if (!press) return;
  const moved = Math.hypot(event.clientX - press.client[0], event.clientY - press.client[1]);
  if (moved < DRAG_PIXELS && !press.box) return;
  const [x, y] = toImage(event);
  const [sx, sy] = press.start;
  press.box = [Math.min(sx, x), Math.min(sy, y), Math.max(sx, x), Math.max(sy, y)];
  drawPrompts(press.box);
});
imageCanvas.addEventListener("pointerup", () => {
  if (!press) return;
  const { start, negative, box } = press;
  press = null;
  if (box && box[2] - box[0] >= 1 && box[3] - box[1] >= 1) {
    changePrompts((p) => { p.box = box; });
  } else if (!box) {
    changePrompts((p) => {
      p.points.push(start);
      p.labels.push(negative ? 0 : 1);
    });
  } else {
    drawPrompts();
  }
});
imageCanvas.addEventListener("pointercancel", () => {
  press = null;
  drawPrompts();
});

document.addEventListener("keydown", (event) => {
  const textField = "input:not([type=checkbox], [type=radio]), textarea, select";
  const typing = event.target.closest?.(textField);
  if (typing || event.altKey || event.metaKey || (event.ctrlKey && event.key !== "z")) return;
  const actions = { z: undo, c: clearPrompts, m: nextCandidate };
  const action = actions[event.key.toLowerCase()];
  if (action) {
    event.preventDefault();
    action();
  }
});

area.addEventListener("dragover", (event) => {
  event.preventDefault();
  area.classList.add("dragover");
});
area.addEventListener("dragleave", () => area.classList.remove("dragover"));
area.addEventListener("drop", (event) => {
  event.preventDefault();
  area.classList.remove("dragover");
  openImage(event.dataTransfer.files[0]);
});

// ---- the controls --------------------------------------------------------------------

$("file-input").addEventListener("change", (event) => {
  openImage(event.target.files[0]);
  event.target.value = ""; // choosing the same file again reloads it
});
$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clearPrompts);
$("multimask").addEventListener("change", () => segment());
$("error-close").addEventListener("click", hideError);
for (const radio of document.querySelectorAll('input[name="view"]')) {
  radio.addEventListener("change", () => setView(radio.value));
}
$("download-png").addEventListener("click", async () => {
  const m = state.answer.masks[state.selected];
  const blob = await maskPng(m.mask, state.answer.width, state.answer.height);
  download(blob, `${baseName()}_mask.png`);
});
$("download-coco").addEventListener("click", () => {
  // All masks on screen: everything mode's, or every candidate of the prompt.
  const masks = state.view === "everything" && state.everything
    ? state.everything.masks
    : state.answer?.masks || state.everything?.masks || [];
  const data = cocoJson(state.image.name, state.image.width, state.image.height, masks.map(
    ({ segmentation, area, bbox, score }) => ({ segmentation, area, bbox, score }),
  ));
  download(new Blob([JSON.stringify(data)], { type: "application/json" }), `${baseName()}_coco.json`);
});

function baseName() {
  return state.image.name.replace(/\.[^.]+$/, "") || "image";
}

const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("repvit-sam-api-key") || "";
keyInput.addEventListener("change", () => sessionStorage.setItem("repvit-sam-api-key", keyInput.value));
new ResizeObserver(fitStage).observe(area);

listSamples();
render();
