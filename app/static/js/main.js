// The demo page: open an image, prompt with clicks and boxes, show and export the masks.
// This module wires the controls to the other modules and starts the page.
import { fitStage, render } from "./draw.js";
import { hideError } from "./feedback.js";
import { listSamples, openImage } from "./image.js";
import { listenToDrops, listenToKeyboard, listenToPointer } from "./input.js";
import { cocoJson, download, maskPng } from "./masks.js";
import { $, area, state } from "./page.js";
import { clearPrompts, segment, undo } from "./prompts.js";
import { setView } from "./views.js";

// ---- pointer, keyboard, drag and drop ------------------------------------------------

listenToPointer();
listenToKeyboard();
listenToDrops();

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

// ---- start-up ------------------------------------------------------------------------

const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("repvit-sam-api-key") || "";
keyInput.addEventListener("change", () => sessionStorage.setItem("repvit-sam-api-key", keyInput.value));
new ResizeObserver(fitStage).observe(area);

listSamples();
render();
