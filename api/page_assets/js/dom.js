// Small DOM helpers for the renderers and the controllers. Data always goes into the page as
// text nodes and attribute values: no markup is ever parsed.

export const byId = (id) => document.getElementById(id);

// An element with attributes (null, undefined and false leave one out; true sets it empty) and
// children (nodes, or anything else as text; arrays are flattened; null and false skipped).
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Text for screen readers only.
export function visuallyHidden(text) {
  return el("span", { class: "visually-hidden" }, text);
}

// ---- field errors: the message next to the field, and the controls marked invalid ----------

export function setFieldError(errorEl, controls, message) {
  errorEl.textContent = message;
  for (const control of controls) control.setAttribute("aria-invalid", "true");
}

export function clearFieldError(errorEl, controls) {
  errorEl.textContent = "";
  for (const control of controls) control.removeAttribute("aria-invalid");
}

// ---- busy buttons: aria-disabled rather than disabled, so that focus stays on them -------

export function setBusy(button, busy, busyText) {
  if (busy) {
    button.dataset.idleText = button.dataset.idleText || button.textContent;
    button.setAttribute("aria-disabled", "true");
    if (busyText) button.textContent = busyText;
  } else {
    button.removeAttribute("aria-disabled");
    if (button.dataset.idleText) button.textContent = button.dataset.idleText;
    delete button.dataset.idleText;
  }
}

export function isBusy(button) {
  return button.getAttribute("aria-disabled") === "true";
}
