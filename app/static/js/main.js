// The demo page: open an image, prompt with clicks and boxes, label several objects, export
// them. This module wires the controls to the other modules and starts the page.
import { fitStage, render } from "./draw.js";
import { cocoJson, download, labelPng, maskPng } from "./exports.js";
import { hideError } from "./feedback.js";
import { listSamples, openImage } from "./image.js";
import { listenToDrops, listenToKeyboard, listenToObjectList, listenToPointer } from "./input.js";
import { chosenMask, finishObject, labelledObjects } from "./objects.js";
import { $, area, state } from "./page.js";
import { clearPrompts, segment, undo } from "./prompts.js";
import { checkReadiness } from "./status.js";
import { setView } from "./views.js";

// ---- pointer, keyboard, drag and drop, the object list ---------------------------------

listenToPointer();
listenToKeyboard();
listenToDrops();
listenToObjectList();

// ---- the controls --------------------------------------------------------------------

$("file-input").addEventListener("change", (event) => {
  openImage(event.target.files[0]);
  event.target.value = ""; // choosing the same file again reloads it
});
$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clearPrompts);
$("finish-object").addEventListener("click", finishObject);
$("multimask").addEventListener("change", () => segment());
$("error-close").addEventListener("click", hideError);
for (const radio of document.querySelectorAll('input[name="view"]')) {
  radio.addEventListener("change", () => setView(radio.value));
}
// A changed setting shows the current view again (an answer for the same settings is kept).
for (const input of $("advanced").querySelectorAll("input")) {
  input.addEventListener("change", () => setView(state.view));
}

// ---- downloads -----------------------------------------------------------------------

function baseName() {
  return state.image.name.replace(/\.[^.]+$/, "") || "image";
}

$("download-png").addEventListener("click", async () => {
  const { mask } = state.answer.masks[state.selected];
  download(await maskPng(mask, state.image.width, state.image.height), `${baseName()}_mask.png`);
});
$("download-coco").addEventListener("click", () => {
  // Everything mode saves its masks; otherwise every object, with its chosen candidate.
  const records = state.view === "everything" && state.everything
    ? state.everything.masks.map((m) => ({ ...m, label: "object" }))
    : labelledObjects().map((o) => ({ ...chosenMask(o), label: o.label }));
  const data = cocoJson(state.image.name, state.image.width, state.image.height, records.map(
    ({ label, segmentation, area, bbox, score }) => ({ label, segmentation, area, bbox, score }),
  ));
  download(new Blob([JSON.stringify(data)], { type: "application/json" }), `${baseName()}_coco.json`);
});
$("download-labels").addEventListener("click", async () => {
  const masks = labelledObjects().map(chosenMask);
  const blob = await labelPng(masks, state.image.width, state.image.height);
  download(blob, `${baseName()}_labels.png`);
});

// ---- start-up ------------------------------------------------------------------------

const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("repvit-sam-api-key") || "";
keyInput.addEventListener("change", () => sessionStorage.setItem("repvit-sam-api-key", keyInput.value));
new ResizeObserver(fitStage).observe(area);

checkReadiness();
listSamples();
render();
