// Every request the page makes, and nothing else: the public API under /api/v1 (with the session
// cookie, as integrations would) and the page's config document. Each call resolves to the data
// or rejects with an ApiError that names the field at fault when the server did.

const API = "/api/v1";
const CONFIG = "/account/api-keys/config.json";

/**
 * What the forms offer and check, from the server's own rules.
 * @typedef {object} PageConfig
 * @property {{scope: string, description: string}[]} scopes  in canonical order
 * @property {number} name_max_length
 * @property {number} expiry_min_days
 * @property {number} expiry_max_days
 * @property {number[]} expiry_preset_days
 * @property {number} expiry_default_days
 */

/**
 * A key as its owner sees it (never the token).
 * @typedef {object} Key
 * @property {string} id
 * @property {string} prefix  the token's first 12 characters
 * @property {string} name
 * @property {string[]} scopes
 * @property {"active" | "revoked" | "expired"} status
 * @property {string} created_at
 * @property {string | null} expires_at
 * @property {string | null} revoked_at
 * @property {string | null} last_used_at
 */

/**
 * A new key with its token, in this answer only.
 * @typedef {Key & {token: string}} MintedKey
 */

/**
 * One event of a key's history. ScopesSet events carry `scopes`, `previous_scopes`, `added`,
 * `removed` and `widened`; Minted ones `name`, `prefix`, `scopes` and `expires_at`; Revoked
 * ones `reason`; Expired ones `expires_at`.
 * @typedef {object} HistoryEvent
 * @property {"Minted" | "ScopesSet" | "Revoked" | "Expired"} type
 * @property {string} at
 * @property {string} actor  as recorded; show it, never take it apart
 * @property {"user" | "key" | "operator" | "system"} [actor_kind]
 * @property {string} [actor_id]  the user id, key id or operator name
 */

export class ApiError extends Error {
  /** status 0 means the server could not be reached. */
  constructor(status, body) {
    super((body && body.error_description) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    /** The request field the server blamed ("name", "scopes", "expires_in_days"), or null. */
    this.field = this.body.field || null;
  }
}

async function request(method, url, body) {
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
    response = await fetch(url, init);
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

const keyUrl = (id, rest = "") => `${API}/keys/${encodeURIComponent(id)}${rest}`;

/** @returns {Promise<PageConfig>} */
export const pageConfig = () => request("GET", CONFIG);

/** @returns {Promise<{user_id: string}>} */
export const account = () => request("GET", `${API}/account`);

/** @returns {Promise<Key[]>} */
export const listKeys = async () => (await request("GET", `${API}/keys`)).keys;

/**
 * @param {{name: string, scopes: string[], expires_in_days: number | null}} fields
 * @returns {Promise<MintedKey>}
 */
export const mintKey = (fields) => request("POST", `${API}/keys`, fields);

/** @returns {Promise<Key>} */
export const setScopes = (keyId, scopes) => request("PUT", keyUrl(keyId, "/scopes"), { scopes });

/** @returns {Promise<Key>} */
export function revokeKey(keyId, reason) {
  const query = reason ? `?reason=${encodeURIComponent(reason)}` : "";
  return request("DELETE", keyUrl(keyId, query));
}

/** @returns {Promise<HistoryEvent[]>} oldest first */
export const keyHistory = async (keyId) =>
  (await request("GET", keyUrl(keyId, "/history"))).events;
