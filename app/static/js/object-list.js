// The list of finished objects: colour, label, score of the chosen candidate, and controls
// whose events input.js hands to objects.js (data-action on each control).
import { colour } from "./masks.js";
import { $, state } from "./page.js";

export function objectColour(id) {
  return colour(id - 1);
}

/** A control of an object; `label` becomes its aria-label. */
function control(tag, action, { label, ...props }) {
  const element = Object.assign(document.createElement(tag), props);
  element.dataset.action = action;
  element.setAttribute("aria-label", label);
  return element;
}

function item(object) {
  const li = document.createElement("li");
  li.dataset.objectId = String(object.id);
  li.classList.toggle("editing", object.id === state.editing);
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  swatch.style.backgroundColor = `rgb(${objectColour(object.id).join(" ")})`;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = object.answer.masks[object.selected].score.toFixed(3);
  score.title = "The decoder's predicted IoU of the chosen candidate";
  li.append(
    swatch,
    control("input", "rename", {
      type: "text", value: object.label, spellcheck: false, label: `Label of object ${object.id}`,
    }),
    score,
    control("input", "show", {
      type: "checkbox", checked: object.visible, title: "Show", label: `Show object ${object.id}`,
    }),
    control("button", "edit", {
      type: "button", textContent: "Edit", title: "Reopen it to refine it",
      label: `Edit object ${object.id}`,
      disabled: object.id === state.editing,
    }),
    control("button", "delete", {
      type: "button", textContent: "×", label: `Delete object ${object.id}`, title: "Delete",
    }),
  );
  return li;
}

export function renderObjectList() {
  $("object-list").replaceChildren(...state.objects.map(item));
  $("object-status").textContent = state.editing === null
    ? `New object (#${state.nextObjectId}): click on it, then Finish.`
    : `Refining object #${state.editing}: Finish stores it again.`;
}
