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
 * @property {number} expiry_warning_days  live keys expiring this soon are flagged and listed
 * @property {number[]} grace_preset_seconds  what the rotate dialog offers
 * @property {number} grace_default_seconds
 * @property {number} grace_max_seconds
 */

/**
 * A key as its owner sees it (never the token).
 * @typedef {object} Key
 * @property {string} id
 * @property {string} prefix  the token's first 12 characters
 * @property {string} name
 * @property {string[]} scopes
 * @property {KeyStatus} status
 * @property {string} created_at
 * @property {string | null} expires_at
 * @property {string | null} revoked_at
 * @property {string | null} last_used_at
 * @property {string | null} [retires_at]  a rotated key: when it stops (maybe not yet)
 * @property {string | null} [predecessor_id]  a successor: the key it took over from
 * @property {string | null} [successor_id]  a rotated key: the key that took over
 */

/**
 * Live: active, suspended (by its owner, until resumed), blocked (by the operator's lifetime
 * policy, until it relaxes). Ended for good: rotated (past its grace), revoked, expired.
 * @typedef {"active" | "suspended" | "blocked" | "rotated" | "revoked" | "expired"} KeyStatus
 */

/**
 * A new key with its token, in this answer only.
 * @typedef {Key & {token: string}} MintedKey
 */

/**
 * A rotated key's successor with its token (in this answer only), and when the old key stops.
 * @typedef {object} RotatedKey
 * @property {string} id
 * @property {string} token
 * @property {string} prefix
 * @property {string} name
 * @property {string[]} scopes
 * @property {string} created_at
 * @property {string | null} expires_at
 * @property {string} predecessor_id
 * @property {string} predecessor_retires_at
 */

/**
 * One event of a key's history. ScopesSet events carry `scopes`, `previous_scopes`, `added`,
 * `removed` and `widened`; Minted ones `name`, `prefix`, `scopes`, `expires_at` and, for a
 * successor, `predecessor_id`; Revoked and Suspended ones `reason`; Expired ones `expires_at`;
 * Rotated ones `successor_id` and `retires_at` (when the old key stops).
 * @typedef {object} HistoryEvent
 * @property {"Minted" | "ScopesSet" | "Revoked" | "Expired" | "Rotated" | "Suspended" |
 *   "Resumed"} type
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

async function request(method, url, body, headers = {}) {
  const init = {
    method,
    credentials: "same-origin",
    cache: "no-store",
    headers: { Accept: "application/json", ...headers },
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

/**
 * A successor for the key, its token shown once; the old key stops after `graceSeconds`.
 * Retrying with the same `idempotencyKey` after a lost answer leaves one live successor.
 * @returns {Promise<RotatedKey>}
 */
export function rotateKey(keyId, graceSeconds, idempotencyKey) {
  const headers = { "Idempotency-Key": idempotencyKey };
  return request("POST", keyUrl(keyId, "/rotate"), { grace_seconds: graceSeconds }, headers);
}

/** Refused everywhere until resumed. @returns {Promise<Key>} */
export const suspendKey = (keyId) => request("POST", keyUrl(keyId, "/suspend"));

/** @returns {Promise<Key>} */
export const resumeKey = (keyId) => request("POST", keyUrl(keyId, "/resume"));
