// What the page knows between renders; the controllers change it, then re-render.
//
// The token just minted is deliberately not here: it lives only in new-token.js and the token
// panel's DOM until "Done" (or the page is left), never in storage, the URL or history.

export const state = {
  /** @type {import("./api.js").PageConfig | null} the forms' choices and limits */
  config: null,
  /** @type {string | null} who is signed in */
  userId: null,
  /** @type {import("./api.js").Key[]} */
  keys: [],
  /** @type {string | null} id of the key whose scopes editor is open */
  editing: null,
  /** @type {Set<string>} ids of the keys whose history is shown */
  openHistory: new Set(),
  /** @type {import("./api.js").Key | null} the key the revoke dialog asks about */
  pendingRevoke: null,
  /** @type {import("./api.js").Key | null} the key the rotate dialog asks about */
  pendingRotate: null,
  /** @type {Set<string>} ids of the keys with a rotate, suspend or resume under way */
  busy: new Set(),
  creating: false,
};

export function findKey(keyId) {
  return state.keys.find((key) => key.id === keyId) || null;
}

// A key's name and prefix by its id, for the history's lineage; null for a key not listed.
export function keyLabel(keyId) {
  const key = findKey(keyId);
  return key ? { id: key.id, name: key.name, prefix: key.prefix } : null;
}

export function replaceKey(updated) {
  state.keys = state.keys.map((key) => (key.id === updated.id ? updated : key));
}

// After the list is read again: forget editors and histories of keys that are gone.
export function setKeys(keys) {
  state.keys = keys;
  if (state.editing && !keys.some((k) => k.id === state.editing && k.status === "active")) {
    state.editing = null;
  }
  for (const id of [...state.openHistory]) {
    if (!keys.some((k) => k.id === id)) state.openHistory.delete(id);
  }
}
