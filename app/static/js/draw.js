// Drawing: the overlay of masks or edges, the candidate list, the prompts and the image's size.
import { clearCanvas, colour, paintEdges, paintMasks } from "./masks.js";
import { objectColour } from "./object-list.js";
import { $, area, imageCanvas, overlay, promptLayer, state } from "./page.js";

/** The prompt view's layers: the visible finished objects, then the one being prompted. */
function objectLayers() {
  const layers = state.objects
    .filter((o) => o.visible && o.id !== state.editing)
    .map((o) => ({ mask: o.answer.masks[o.selected].mask, rgb: objectColour(o.id) }));
  const masks = state.answer?.masks || [];
  if (masks.length) {
    const id = state.editing ?? state.nextObjectId;
    layers.push({ mask: masks[state.selected].mask, rgb: objectColour(id) });
  }
  return layers;
}

const SVG = "http://www.w3.org/2000/svg";

export function render() {
  const masks = state.answer?.masks || [];
  overlay.dataset.view = state.view;
  promptLayer.classList.toggle("off", state.view !== "prompt");
  if (state.view === "everything" && state.everything) {
    const layers = state.everything.masks.map((m, i) => ({ mask: m.mask, rgb: colour(i) }));
    paintMasks(overlay, layers, 140);
    overlay.dataset.maskCount = String(layers.length);
  } else if (state.view === "edges" && state.edges) {
    paintEdges(overlay, state.edges.bitmap);
  } else if (state.view === "prompt" && state.image) {
    paintMasks(overlay, objectLayers());
  } else {
    clearCanvas(overlay);
  }
  // What the overlay shows, for people using devtools and for the browser test.
  overlay.dataset.logitsId = state.answer?.logits_id || "";
  overlay.dataset.maskIndex = masks.length ? String(state.selected) : "";
  overlay.dataset.segmentCalls = String(state.segmentCalls);
  renderCandidates(masks);
  const everything = state.view === "everything" && state.everything;
  const objects = state.objects.length > 0 || masks.length > 0;
  $("download-png").disabled = !masks.length;
  $("download-coco").disabled = everything ? !everything.masks.length : !objects;
  $("download-labels").disabled = !objects;
  $("finish-object").disabled = !masks.length && state.editing === null;
  $("undo").disabled = !state.history.length;
}

export function renderCandidates(masks) {
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
export function fitStage() {
  if (!state.image) return;
  const padding = 32;
  const width = area.clientWidth - padding;
  // Side by side the image area has the window's height; stacked under the controls, it scrolls.
  const height = (sideBySide.matches ? area.clientHeight : window.innerHeight) - padding;
  const scale = Math.min(width / state.image.width, Math.max(height, 200) / state.image.height, 4);
  imageCanvas.style.width = `${Math.floor(state.image.width * scale)}px`;
  drawPrompts();
}

export function drawPrompts(dragBox = null) {
  const scale = state.image ? state.image.width / imageCanvas.getBoundingClientRect().width : 1;
  const shapes = [];
  const box = dragBox || state.prompts.box;
  if (box) {
    // Two tones, a dark halo under a light line, so the box shows on light and dark images.
    const [x0, y0, x1, y1] = box;
    for (const [tone, width] of [["halo", 4], ["line", 2]]) {
      const rect = document.createElementNS(SVG, "rect");
      for (const [k, v] of Object.entries({ x: x0, y: y0, width: x1 - x0, height: y1 - y0 })) {
        rect.setAttribute(k, v);
      }
      rect.classList.add(tone);
      rect.setAttribute("stroke-width", width * scale);
      rect.setAttribute("stroke-dasharray", dragBox ? `${6 * scale} ${4 * scale}` : "none");
      shapes.push(rect);
    }
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
