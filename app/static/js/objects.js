// Objects: the labeller finishes the object being prompted (Enter) and starts the next. Each
// finished object keeps its prompts, answer, chosen candidate and logits, so it can be reopened
// and refined; the exports take every object's chosen candidate.
import { drawPrompts, render } from "./draw.js";
import { renderObjectList } from "./object-list.js";
import { $, state } from "./page.js";
import { copyPrompts, emptyPrompts } from "./prompts.js";

/** The object being prompted as a record, or null while it has no mask. */
function workingRecord() {
  const masks = state.answer?.masks;
  if (!masks?.length) return null;
  const id = state.editing ?? state.nextObjectId;
  const stored = state.objects.find((o) => o.id === id);
  return {
    id,
    label: $("object-label").value.trim() || "object",
    prompts: copyPrompts(state.prompts),
    history: [...state.history],
    answer: state.answer,
    selected: state.selected,
    logitsId: state.logitsId,
    visible: stored ? stored.visible : true,
  };
}

/** Every object with the one being prompted in its place (last, when it is new). */
export function labelledObjects() {
  const working = workingRecord();
  const list = state.objects.map((o) => (working && o.id === working.id ? working : o));
  if (working && state.editing === null) list.push(working);
  return list;
}

/** The chosen candidate's mask record ({mask, segmentation, area, bbox, score}) of an object. */
export function chosenMask(object) {
  return object.answer.masks[object.selected];
}

function refresh() {
  drawPrompts();
  render();
  renderObjectList();
}

/** Makes `record` (or a new, empty object for null) the one being prompted. */
function load(record) {
  state.inFlight?.abort(); // an answer still on its way belongs to the object being left
  state.inFlight = null;
  state.editing = record ? record.id : null;
  state.prompts = record ? copyPrompts(record.prompts) : emptyPrompts();
  state.history = record ? [...record.history] : [];
  state.answer = record ? record.answer : null;
  state.selected = record ? record.selected : 0;
  state.logitsId = record ? record.logitsId : null;
  if (record) $("object-label").value = record.label;
  refresh();
}

/** Stores the object being prompted (if it has a mask) and starts a new one. */
export function finishObject() {
  const working = workingRecord();
  if (!working && state.editing === null) return; // nothing to store (or its answer is coming)
  if (working) {
    const at = state.objects.findIndex((o) => o.id === working.id);
    if (at >= 0) {
      state.objects[at] = working;
    } else {
      state.objects.push(working);
      state.nextObjectId += 1;
    }
  }
  load(null);
}

/** Finishes the object being prompted, then prompts the finished object `id` again. */
export function reopenObject(id) {
  if (state.editing === id) return;
  finishObject();
  const record = state.objects.find((o) => o.id === id);
  if (record) load(record);
}

export function deleteObject(id) {
  state.objects = state.objects.filter((o) => o.id !== id);
  if (state.editing === id) load(null);
  else refresh();
}

export function showObject(id, visible) {
  const record = state.objects.find((o) => o.id === id);
  if (record) record.visible = visible;
  render();
}

export function renameObject(id, label) {
  const record = state.objects.find((o) => o.id === id);
  if (record) record.label = label.trim() || "object";
  if (state.editing === id) $("object-label").value = label;
}

/** No objects: a new image. */
export function resetObjects() {
  state.objects = [];
  state.nextObjectId = 1;
  load(null);
}
