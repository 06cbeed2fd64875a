// Opening an image: a file of the user's or a sample photo, encoded once by /embed.
import { ApiError } from "./api.js";
import { fitStage } from "./draw.js";
import { addTiming, api, attempt, hideError, spinner } from "./feedback.js";
import { resetObjects } from "./objects.js";
import { $, imageCanvas, overlay, promptLayer, state } from "./page.js";
import { setView } from "./views.js";

export async function openImage(file) {
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
  resetObjects(); // objects belong to their image
  setView("prompt");
}

async function openSample(sample) {
  const outcome = await attempt(async () => {
    const response = await fetch(sample.url);
    if (!response.ok) throw new ApiError(`Cannot load the sample ${sample.name}.`, response.status);
    return response.blob();
  });
  if (outcome) await openImage(new File([outcome], `${sample.name}.jpg`, { type: outcome.type }));
}

export async function listSamples() {
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
