// The API-keys page. It calls the public API with the session cookie, as integrations would,
// and builds every piece of data into the DOM as text nodes: no markup is ever parsed.
//
// A new token lives only in the `token` variable and the token panel's DOM until "Done" (or the
// page is left): never in storage, the URL or history.
"use strict";

(() => {
  const API = "/api/v1";
  const PAGE = "/account/api-keys";
  const DAY_MS = 86400000;
  const WARN_DAYS = 7;
  const MAX_NAME = 100;
  const MIN_DAYS = 1;
  const MAX_DAYS = 3650;
  const STATUS_ORDER = { active: 0, expired: 1, revoked: 2 };
  const EVENT_LABELS = {
    Minted: "Minted",
    ScopesSet: "Scopes set",
    Revoked: "Revoked",
    Expired: "Expired",
  };

  const byId = (id) => document.getElementById(id);

  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
  const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
    dateStyle: "medium",
    timeStyle: "short",
  });

  // ---- state ---------------------------------------------------------------------------------

  let userId = null;
  let keys = [];
  let scopeCatalogue = []; // [{scope, description}], read from the server-rendered create form
  let token = null; // the token just minted; cleared on Done and when the page is left
  let editing = null; // id of the key whose scopes form is open
  const openHistory = new Set(); // ids of keys whose history is shown
  let pendingRevoke = null;
  let creating = false;

  // ---- small DOM helpers ---------------------------------------------------------------------

  function el(tag, attrs, ...children) {
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

  function hidden(text) {
    return el("span", { class: "visually-hidden" }, text);
  }

  function parseDate(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  function timeEl(iso, format) {
    const date = parseDate(iso);
    if (!date) return el("span", {}, String(iso));
    return el(
      "time",
      { datetime: iso, title: dateTimeFormat.format(date) },
      (format || dateFormat).format(date),
    );
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  function announce(text) {
    const status = byId("status-message");
    status.textContent = "";
    // A fresh text node after a tick, so that repeating the same message is announced again.
    window.setTimeout(() => {
      status.textContent = text;
    }, 50);
  }

  function setBusy(button, busy, busyText) {
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

  function isBusy(button) {
    return button.getAttribute("aria-disabled") === "true";
  }

  // ---- the API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error_description) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
      this.field = this.body.field || null;
    }
  }

  async function api(method, path, body) {
    const init = {
      method,
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch (_) {
      throw new ApiError(0, { error: "network_error" });
    }
    let payload = null;
    try {
      const text = await response.text();
      payload = text ? JSON.parse(text) : null;
    } catch (_) {
      payload = null;
    }
    if (!response.ok) throw new ApiError(response.status, payload);
    return payload;
  }

  const keyPath = (id, rest) => `/keys/${encodeURIComponent(id)}${rest || ""}`;

  function describeError(err) {
    const detail = err.body && err.body.error_description;
    switch (true) {
      case err.status === 0:
        return "Could not reach Anthra. Check your connection and try again.";
      case err.status === 401:
        return "You were signed out.";
      case err.status === 403 && err.body.error === "cross_site_request":
        return "The request was refused as cross-site. Reload the page and try again.";
      case err.status === 403:
        return `Not allowed: ${detail || "this session may not do that"}.`;
      case err.status === 404:
        return "That key no longer exists. The list has been refreshed.";
      case err.status === 409:
        return `${detail || "The key is no longer active"}. The list has been refreshed.`;
      case err.status === 503:
        return "Anthra is catching up. Try again in a moment.";
      case err.status >= 500:
        return `Something went wrong on Anthra’s side (${err.status}). Try again in a moment.`;
      default:
        return detail || `Unexpected answer from the server (${err.status}).`;
    }
  }

  // ---- the page-level alert ------------------------------------------------------------------

  function showAlert(err) {
    const message = typeof err === "string" ? err : describeError(err);
    const box = byId("page-alert");
    const text = byId("page-alert-message");
    text.replaceChildren(message);
    if (err instanceof ApiError && err.status === 401) {
      text.append(" ", el("a", { href: PAGE }, "Reload the page to sign in again."));
    }
    box.hidden = false;
  }

  function hideAlert() {
    byId("page-alert").hidden = true;
    byId("page-alert-message").replaceChildren();
  }

  // After a 404 or 409 the list is out of date: show the error and read the list again.
  async function failed(err) {
    showAlert(err);
    if (err instanceof ApiError && (err.status === 404 || err.status === 409)) {
      await loadKeys();
    }
  }

  // ---- field errors --------------------------------------------------------------------------

  function setFieldError(errorEl, controls, message) {
    errorEl.textContent = message;
    for (const control of controls) control.setAttribute("aria-invalid", "true");
  }

  function clearFieldError(errorEl, controls) {
    errorEl.textContent = "";
    for (const control of controls) control.removeAttribute("aria-invalid");
  }

  // ---- who is signed in ----------------------------------------------------------------------

  async function loadAccount() {
    const who = byId("whoami");
    try {
      const account = await api("GET", "/account");
      userId = account.user_id;
      who.replaceChildren("Signed in as ", el("strong", {}, userId));
    } catch (err) {
      who.replaceChildren(err.status === 401 ? "Not signed in" : "");
      if (err.status === 401) showAlert(err);
    }
  }

  // ---- the create form -----------------------------------------------------------------------

  const createForm = () => byId("create-form");
  const nameInput = () => byId("key-name");
  const expirySelect = () => byId("expiry");
  const customInput = () => byId("expiry-custom");
  const createScopeBoxes = () => [...byId("scope-list").querySelectorAll('input[name="scopes"]')];

  function createFields() {
    return {
      name: { error: byId("error-name"), controls: [nameInput()], focus: nameInput() },
      scopes: {
        error: byId("error-scopes"),
        controls: createScopeBoxes(),
        focus: createScopeBoxes()[0],
      },
      expires_in_days: {
        error: byId("error-expires_in_days"),
        controls: [expirySelect(), customInput()],
        focus: expirySelect().value === "custom" ? customInput() : expirySelect(),
      },
    };
  }

  function syncExpiry() {
    const value = expirySelect().value;
    byId("custom-days").hidden = value !== "custom";
    customInput().required = value === "custom";
    byId("expiry-note").hidden = value !== "never";
  }

  function readCreateForm() {
    const errors = {};
    const name = nameInput().value.trim();
    if (!name) errors.name = "Give the key a name, so you know later what it is for.";
    else if ([...name].length > MAX_NAME) errors.name = `Use at most ${MAX_NAME} characters.`;
    const scopes = createScopeBoxes()
      .filter((box) => box.checked)
      .map((box) => box.value);
    if (!scopes.length) errors.scopes = "Pick at least one scope.";
    let days = null;
    const choice = expirySelect().value;
    if (choice === "custom") {
      const raw = customInput().value.trim();
      days = /^\d+$/.test(raw) ? Number(raw) : NaN;
      if (!(days >= MIN_DAYS && days <= MAX_DAYS)) {
        errors.expires_in_days = `Enter a whole number of days from ${MIN_DAYS} to ${MAX_DAYS}.`;
      }
    } else if (choice !== "never") {
      days = Number(choice);
    }
    return { body: { name, scopes, expires_in_days: days }, errors };
  }

  function clearCreateErrors() {
    for (const field of Object.values(createFields())) clearFieldError(field.error, field.controls);
  }

  function showCreateErrors(errors) {
    const fields = createFields();
    let first = null;
    for (const name of ["name", "scopes", "expires_in_days"]) {
      if (!errors[name]) continue;
      setFieldError(fields[name].error, fields[name].controls, errors[name]);
      first = first || fields[name].focus;
    }
    if (first) first.focus();
  }

  async function onCreate(event) {
    event.preventDefault();
    const button = byId("create-button");
    if (creating) return;
    hideAlert();
    clearCreateErrors();
    const { body, errors } = readCreateForm();
    if (Object.keys(errors).length) {
      showCreateErrors(errors);
      return;
    }
    creating = true;
    setBusy(button, true, "Creating…");
    let minted;
    try {
      minted = await api("POST", "/keys", body);
    } catch (err) {
      if (err.status === 400 && err.field && err.field in createFields()) {
        showCreateErrors({ [err.field]: err.message });
      } else {
        showAlert(err);
      }
      return;
    } finally {
      creating = false;
      setBusy(button, false);
    }
    createForm().reset();
    syncExpiry();
    showToken(minted);
    await loadKeys();
  }

  // ---- the new token, shown once -------------------------------------------------------------

  function showToken(minted) {
    token = minted.token;
    byId("token-value").textContent = token;
    byId("token-key-name").textContent = minted.name;
    byId("copy-status").textContent = "";
    byId("token-panel").hidden = false;
    byId("token-heading").focus();
  }

  function clearToken() {
    token = null;
    byId("token-value").textContent = "";
    byId("token-key-name").textContent = "";
    byId("copy-status").textContent = "";
    byId("token-panel").hidden = true;
    const selection = window.getSelection();
    if (selection) selection.removeAllRanges();
  }

  function selectToken() {
    const range = document.createRange();
    range.selectNodeContents(byId("token-value"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  async function copyToken() {
    if (!token) return;
    const status = byId("copy-status");
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(token);
        status.textContent = "Copied to the clipboard.";
        return;
      } catch (_) {
        // fall through: select the text so that the person can copy it themselves
      }
    }
    selectToken();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (_) {
      copied = false;
    }
    status.textContent = copied
      ? "Copied to the clipboard."
      : "The token is selected: press Ctrl+C (⌘C on a Mac) to copy it.";
  }

  // ---- the key list --------------------------------------------------------------------------

  async function loadKeys() {
    try {
      const data = await api("GET", "/keys");
      keys = data.keys;
    } catch (err) {
      byId("keys-summary").textContent = "Your keys could not be loaded.";
      showAlert(err);
      return;
    }
    if (editing && !keys.some((k) => k.id === editing && k.status === "active")) editing = null;
    for (const id of [...openHistory]) {
      if (!keys.some((k) => k.id === id)) openHistory.delete(id);
    }
    renderKeys();
  }

  function sortedKeys() {
    return [...keys].sort(
      (a, b) =>
        (STATUS_ORDER[a.status] ?? 3) - (STATUS_ORDER[b.status] ?? 3) ||
        String(b.created_at).localeCompare(String(a.created_at)),
    );
  }

  function summaryText() {
    if (!keys.length) return "You have no keys yet. Create one above to get started.";
    const counts = { active: 0, revoked: 0, expired: 0 };
    for (const key of keys) counts[key.status] = (counts[key.status] || 0) + 1;
    const parts = [`${counts.active} active`];
    if (counts.expired) parts.push(`${counts.expired} expired`);
    if (counts.revoked) parts.push(`${counts.revoked} revoked`);
    return `${plural(keys.length, "key")}: ${parts.join(", ")}.`;
  }

  // Re-rendering replaces the rows; keep the keyboard focus on the same control of the same key.
  function focusedControl() {
    const active = document.activeElement;
    const row = active && active.closest && active.closest('[data-testid="key-row"]');
    if (!row || !active.dataset.testid) return null;
    return { keyId: row.dataset.keyId, testid: active.dataset.testid };
  }

  function focusKeyControl(keyId, testids) {
    const row = [...document.querySelectorAll('[data-testid="key-row"]')].find(
      (r) => r.dataset.keyId === keyId,
    );
    if (!row) return false;
    for (const testid of testids) {
      const control = row.querySelector(`[data-testid="${testid}"]`);
      if (control) {
        control.focus();
        return true;
      }
    }
    return false;
  }

  function renderKeys() {
    const kept = focusedControl();
    const table = byId("keys-table");
    for (const body of [...table.tBodies]) body.remove();
    byId("keys-summary").textContent = summaryText();
    table.hidden = keys.length === 0;
    for (const key of sortedKeys()) table.append(renderKey(key));
    for (const id of openHistory) loadHistory(id);
    if (kept) focusKeyControl(kept.keyId, [kept.testid, "show-history"]);
  }

  function scopeDescription(scope) {
    const known = scopeCatalogue.find((s) => s.scope === scope);
    return known ? known.description : "";
  }

  function expiryContent(key) {
    if (!key.expires_at) return ["never"];
    const at = parseDate(key.expires_at);
    const parts = [timeEl(key.expires_at)];
    if (!at) return parts;
    if (key.status === "active") {
      const ms = at.getTime() - Date.now();
      const days = Math.ceil(ms / DAY_MS);
      let relative;
      if (ms <= 0) relative = "expiring now";
      else if (days <= 1) relative = "expires within a day";
      else relative = `expires in ${days} days`;
      const soon = days < WARN_DAYS;
      parts.push(
        el(
          "span",
          {
            class: soon ? "expiry-relative expiry-soon" : "expiry-relative",
            "data-testid": soon ? "expiry-warning" : "expiry-relative",
          },
          soon ? [el("span", { "aria-hidden": "true" }, "⚠ "), hidden("Warning: ")] : null,
          relative,
        ),
      );
    } else if (key.status === "expired") {
      parts.push(el("span", { class: "expiry-relative" }, "expired"));
    }
    return parts;
  }

  function renderKey(key) {
    const active = key.status === "active";
    const forKey = hidden(` for “${key.name}”`);
    const scopes = el(
      "ul",
      { class: "scope-tags", "data-testid": "key-scopes" },
      key.scopes.map((scope) =>
        el("li", {}, el("code", { title: scopeDescription(scope) }, scope)),
      ),
    );
    const historyOpen = openHistory.has(key.id);
    const detailId = `key-${key.id}-detail`;
    const actions = el(
      "div",
      { class: "row-actions" },
      active
        ? el(
            "button",
            {
              type: "button",
              class: "button button-small",
              "data-testid": "edit-scopes",
              "data-action": "edit",
              "aria-expanded": editing === key.id ? "true" : "false",
              "aria-controls": detailId,
            },
            "Edit scopes",
            forKey.cloneNode(true),
          )
        : null,
      active
        ? el(
            "button",
            {
              type: "button",
              class: "button button-small button-danger-outline",
              "data-testid": "revoke",
              "data-action": "revoke",
            },
            "Revoke",
            forKey.cloneNode(true),
          )
        : null,
      el(
        "button",
        {
          type: "button",
          class: "button button-small button-quiet",
          "data-testid": "show-history",
          "data-action": "history",
          "aria-expanded": historyOpen ? "true" : "false",
          "aria-controls": detailId,
        },
        historyOpen ? "Hide history" : "History",
        forKey.cloneNode(true),
      ),
    );

    const main = el(
      "tr",
      { class: "key-main" },
      el(
        "th",
        { scope: "row", class: "key-name", "data-label": "Name" },
        el("span", { class: "name-text", "data-testid": "key-name-text" }, key.name),
      ),
      el(
        "td",
        { "data-label": "Key" },
        el("code", { class: "key-prefix", "data-testid": "key-prefix" }, `${key.prefix}…`),
      ),
      el("td", { "data-label": "Scopes" }, scopes),
      el("td", { "data-label": "Created" }, timeEl(key.created_at)),
      el("td", { "data-label": "Expires", class: "key-expiry" }, expiryContent(key)),
      el(
        "td",
        { "data-label": "Last used", class: "key-last-used" },
        key.last_used_at
          ? el("span", { "data-testid": "key-last-used" }, timeEl(key.last_used_at, dateTimeFormat))
          : el("span", { "data-testid": "key-last-used", class: "muted" }, "never used"),
      ),
      el(
        "td",
        { "data-label": "Status" },
        el(
          "span",
          { class: `status status-${key.status}`, "data-testid": "key-status" },
          key.status,
        ),
      ),
      el("td", { class: "key-actions", "data-label": "Actions" }, actions),
    );

    const detail = el(
      "tr",
      { class: "key-detail", id: detailId, hidden: !(editing === key.id || historyOpen) },
      el(
        "td",
        { colspan: "8" },
        editing === key.id && active ? renderEditForm(key) : null,
        historyOpen
          ? el(
              "section",
              {
                class: "history",
                "aria-label": `History of “${key.name}”`,
                "data-history-for": key.id,
              },
              el("h3", {}, "History"),
              el("p", { class: "hint history-loading" }, "Loading history…"),
            )
          : null,
      ),
    );

    const body = el(
      "tbody",
      { class: `key key-${key.status}`, "data-testid": "key-row", "data-key-id": key.id },
      main,
      detail,
    );
    body.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button || !body.contains(button)) return;
      const action = button.dataset.action;
      if (action === "edit") toggleEdit(key);
      else if (action === "revoke") askRevoke(key);
      else if (action === "history") toggleHistory(key);
    });
    return body;
  }

  // ---- editing scopes ------------------------------------------------------------------------

  function renderEditForm(key) {
    const prefix = `edit-${key.id}`;
    const errorId = `${prefix}-error-scopes`;
    const hintId = `${prefix}-hint`;
    const boxes = scopeCatalogue.map(({ scope, description }) => {
      const id = `${prefix}-${scope}`;
      return el(
        "li",
        { class: "scope-option" },
        el("input", {
          type: "checkbox",
          name: "scopes",
          value: scope,
          id,
          "data-testid": `edit-scope-${scope}`,
          checked: key.scopes.includes(scope),
          "aria-describedby": `${id}-desc`,
        }),
        el(
          "label",
          { for: id },
          el("code", { class: "scope-name" }, scope),
          " ",
          el("span", { class: "scope-desc", id: `${id}-desc` }, description),
        ),
      );
    });
    const error = el("p", {
      class: "field-error",
      id: errorId,
      "data-testid": "error-scopes",
      role: "alert",
    });
    const save = el(
      "button",
      { type: "submit", class: "button button-primary", "data-testid": "save-scopes" },
      "Save scopes",
    );
    const cancel = el(
      "button",
      { type: "button", class: "button", "data-testid": "cancel-scopes" },
      "Cancel",
    );
    const form = el(
      "form",
      { class: "edit-form", "data-testid": "edit-form", novalidate: true },
      el(
        "fieldset",
        { class: "scopes-fieldset", "aria-describedby": `${hintId} ${errorId}` },
        el("legend", {}, `Scopes of “${key.name}”`),
        el(
          "p",
          { class: "hint", id: hintId },
          "Pick the narrowest set of scopes that does the job. The change applies at once.",
        ),
        el("ul", { class: "scope-list" }, boxes),
        error,
      ),
      el("div", { class: "actions" }, save, cancel),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      saveScopes(key, form, save, error);
    });
    form.addEventListener("change", () => {
      const inputs = [...form.querySelectorAll('input[name="scopes"]')];
      clearFieldError(error, inputs);
    });
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        closeEdit(key.id);
      }
    });
    cancel.addEventListener("click", () => closeEdit(key.id));
    return form;
  }

  function toggleEdit(key) {
    hideAlert();
    if (editing === key.id) {
      closeEdit(key.id);
      return;
    }
    editing = key.id;
    renderKeys();
    focusKeyControl(key.id, ["edit-scope-" + (key.scopes[0] || scopeCatalogue[0].scope)]);
  }

  function closeEdit(keyId) {
    editing = null;
    renderKeys();
    focusKeyControl(keyId, ["edit-scopes", "show-history"]);
  }

  async function saveScopes(key, form, button, error) {
    if (isBusy(button)) return;
    hideAlert();
    const inputs = [...form.querySelectorAll('input[name="scopes"]')];
    const chosen = inputs.filter((box) => box.checked).map((box) => box.value);
    clearFieldError(error, inputs);
    if (!chosen.length) {
      setFieldError(
        error,
        inputs,
        "A key needs at least one scope. To stop a key working, revoke it.",
      );
      inputs[0].focus();
      return;
    }
    const unchanged =
      chosen.length === key.scopes.length && chosen.every((s) => key.scopes.includes(s));
    if (unchanged) {
      closeEdit(key.id);
      announce(`The scopes of “${key.name}” are unchanged.`);
      return;
    }
    setBusy(button, true, "Saving…");
    let updated;
    try {
      updated = await api("PUT", keyPath(key.id, "/scopes"), { scopes: chosen });
    } catch (err) {
      setBusy(button, false);
      if (err.status === 400 && err.field === "scopes") {
        setFieldError(error, inputs, err.message);
        inputs[0].focus();
      } else {
        await failed(err);
      }
      return;
    }
    keys = keys.map((k) => (k.id === updated.id ? updated : k));
    closeEdit(key.id);
    announce(`Saved: “${updated.name}” now has ${updated.scopes.join(", ")}.`);
  }

  // ---- revoking ------------------------------------------------------------------------------

  function askRevoke(key) {
    hideAlert();
    const dialog = byId("confirm-dialog");
    if (typeof dialog.showModal !== "function") {
      const ok = window.confirm(
        `Revoke “${key.name}”? Anything using it will be refused. This cannot be undone.`,
      );
      if (ok) revoke(key, "");
      return;
    }
    pendingRevoke = key;
    byId("confirm-key-name").textContent = key.name;
    byId("revoke-reason").value = "";
    dialog.returnValue = "";
    dialog.showModal();
  }

  function onDialogClose() {
    const dialog = byId("confirm-dialog");
    const key = pendingRevoke;
    pendingRevoke = null;
    const reason = byId("revoke-reason").value.trim();
    byId("revoke-reason").value = "";
    if (!key) return;
    if (dialog.returnValue === "confirm") revoke(key, reason);
    else focusKeyControl(key.id, ["revoke", "show-history"]);
  }

  async function revoke(key, reason) {
    const query = reason ? `?reason=${encodeURIComponent(reason)}` : "";
    let revoked;
    try {
      revoked = await api("DELETE", keyPath(key.id, query));
    } catch (err) {
      await failed(err);
      return;
    }
    keys = keys.map((k) => (k.id === revoked.id ? revoked : k));
    if (editing === key.id) editing = null;
    renderKeys();
    focusKeyControl(key.id, ["show-history"]);
    announce(`Revoked “${key.name}”. Requests with it are now refused.`);
  }

  // ---- history -------------------------------------------------------------------------------

  function toggleHistory(key) {
    if (openHistory.has(key.id)) openHistory.delete(key.id);
    else openHistory.add(key.id);
    renderKeys();
    focusKeyControl(key.id, ["show-history"]);
  }

  function historyContainer(keyId) {
    return [...document.querySelectorAll("[data-history-for]")].find(
      (s) => s.dataset.historyFor === keyId,
    );
  }

  async function loadHistory(keyId) {
    let history;
    try {
      history = await api("GET", keyPath(keyId, "/history"));
    } catch (err) {
      const container = historyContainer(keyId);
      if (container) {
        container.replaceChildren(
          el("h3", {}, "History"),
          el("p", { class: "hint" }, "The history could not be loaded."),
        );
      }
      showAlert(err);
      return;
    }
    const container = historyContainer(keyId);
    if (!container || !openHistory.has(keyId)) return;
    container.replaceChildren(el("h3", {}, "History"), renderHistory(history.events));
  }

  function actorText(actor) {
    const you = userId !== null && actor === `user:${userId}`;
    if (you) return [el("code", {}, actor), " (you)"];
    if (actor.startsWith("key:")) return [el("code", {}, actor), " (the key itself)"];
    if (actor === "system") return [el("code", {}, actor), " (automatic)"];
    return [el("code", {}, actor)];
  }

  function scopeText(list) {
    return list.length ? list.join(", ") : "none";
  }

  function eventDetails(event) {
    switch (event.type) {
      case "Minted":
        return [
          `Named “${event.name}”, key ${event.prefix}…, scopes ${scopeText(event.scopes)}, `,
          event.expires_at ? ["expires ", timeEl(event.expires_at)] : "no expiry",
          ".",
        ];
      case "ScopesSet": {
        const added = event.scopes.filter((s) => !event.previous_scopes.includes(s));
        const removed = event.previous_scopes.filter((s) => !event.scopes.includes(s));
        const changes = [];
        if (added.length) changes.push(`added ${added.join(", ")}`);
        if (removed.length) changes.push(`removed ${removed.join(", ")}`);
        return [
          el("span", { class: "scopes-before" }, scopeText(event.previous_scopes)),
          el("span", { "aria-hidden": "true" }, " → "),
          hidden(" changed to "),
          el("span", { class: "scopes-after" }, scopeText(event.scopes)),
          changes.length ? ` (${changes.join("; ")})` : "",
        ];
      }
      case "Revoked":
        return [event.reason ? `Reason: ${event.reason}` : "No reason given."];
      case "Expired":
        return event.expires_at ? ["Reached its expiry, ", timeEl(event.expires_at), "."] : [];
      default:
        return [];
    }
  }

  function renderHistory(events) {
    if (!events.length) return el("p", { class: "hint" }, "No events.");
    return el(
      "ol",
      { class: "history-list", "data-testid": "history" },
      events.map((event) =>
        el(
          "li",
          { class: "history-event", "data-testid": "history-event", "data-type": event.type },
          el(
            "p",
            { class: "history-head" },
            el("strong", { class: "history-type" }, EVENT_LABELS[event.type] || event.type),
            " ",
            timeEl(event.at, dateTimeFormat),
            " by ",
            actorText(event.actor),
          ),
          el("p", { class: "history-details" }, eventDetails(event)),
        ),
      ),
    );
  }

  // ---- start ---------------------------------------------------------------------------------

  function start() {
    scopeCatalogue = createScopeBoxes().map((box) => ({
      scope: box.value,
      description: (byId(`${box.id}-desc`) || {}).textContent || "",
    }));

    createForm().addEventListener("submit", onCreate);
    expirySelect().addEventListener("change", () => {
      syncExpiry();
      clearFieldError(byId("error-expires_in_days"), [expirySelect(), customInput()]);
    });
    nameInput().addEventListener("input", () =>
      clearFieldError(byId("error-name"), [nameInput()]),
    );
    customInput().addEventListener("input", () =>
      clearFieldError(byId("error-expires_in_days"), [expirySelect(), customInput()]),
    );
    byId("scope-list").addEventListener("change", () =>
      clearFieldError(byId("error-scopes"), createScopeBoxes()),
    );
    syncExpiry();

    byId("copy-button").addEventListener("click", copyToken);
    byId("token-done").addEventListener("click", () => {
      clearToken();
      byId("keys-heading").focus();
    });
    // Leaving the page (or it going into the back/forward cache) forgets the token.
    window.addEventListener("pagehide", clearToken);

    byId("page-alert-dismiss").addEventListener("click", hideAlert);
    byId("confirm-dialog").addEventListener("close", onDialogClose);
    byId("cancel-revoke").addEventListener("click", () => byId("confirm-dialog").close("cancel"));

    loadAccount();
    loadKeys();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
