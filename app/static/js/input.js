// Input on the page: pointer clicks and drags on the image, keyboard shortcuts, dropped files,
// and the controls of the object list.
import { drawPrompts } from "./draw.js";
import { openImage } from "./image.js";
import { deleteObject, finishObject, renameObject, reopenObject, showObject } from "./objects.js";
import { area, imageCanvas, state } from "./page.js";
import { changePrompts, clearPrompts, nextCandidate, undo } from "./prompts.js";

const DRAG_PIXELS = 5; // screen pixels a press must move to become a box

/** Screen position of a pointer event -> XY pixels of the image, clamped to it. */
function toImage(event) {
  const r = imageCanvas.getBoundingClientRect();
  const x = ((event.clientX - r.left) / r.width) * state.image.width;
  const y = ((event.clientY - r.top) / r.height) * state.image.height;
  const clamp = (v, hi) => Math.round(Math.min(Math.max(v, 0), hi) * 10) / 10;
  return [clamp(x, state.image.width), clamp(y, state.image.height)];
}

let press = null; // {start: [x, y] image pixels, client: [x, y], negative, box}

/** A click adds a point (right or shift: background); a drag past DRAG_PIXELS sets the box. */
export function listenToPointer() {
  imageCanvas.addEventListener("contextmenu", (event) => event.preventDefault());
  imageCanvas.addEventListener("pointerdown", (event) => {
    if (!state.image || (event.button !== 0 && event.button !== 2)) return;
    document.activeElement?.blur(); // a label typed, the keys are shortcuts again
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
}

/** Enter in the label field, or where Enter means nothing else, finishes the object. */
function finishesObject(event) {
  if (event.key !== "Enter" || event.altKey || event.ctrlKey || event.metaKey) return false;
  if (event.target.id === "object-label") return true;
  return !event.target.closest?.("button, summary, a, input, textarea, select");
}

/** Enter finish the object; z undo, c clear, m next candidate, not while typing in a field. */
export function listenToKeyboard() {
  document.addEventListener("keydown", (event) => {
    if (finishesObject(event)) {
      event.preventDefault();
      event.target.blur?.();
      finishObject();
      return;
    }
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
}

/** An image file dropped anywhere on the image area opens it. */
export function listenToDrops() {
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
}

/** The object list's controls (rendered by object-list.js with a data-action each). */
export function listenToObjectList() {
  const list = document.getElementById("object-list");
  const target = (event) => {
    const control = event.target.closest("[data-action]");
    const item = control?.closest("[data-object-id]");
    return item ? { action: control.dataset.action, id: Number(item.dataset.objectId) } : {};
  };
  list.addEventListener("click", (event) => {
    const { action, id } = target(event);
    if (action === "edit") reopenObject(id);
    else if (action === "delete") deleteObject(id);
  });
  list.addEventListener("change", (event) => {
    const { action, id } = target(event);
    if (action === "show") showObject(id, event.target.checked);
  });
  list.addEventListener("input", (event) => {
    const { action, id } = target(event);
    if (action === "rename") renameObject(id, event.target.value);
  });
}
