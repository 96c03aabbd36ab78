// The keys table's order and the sentence above it.

// Live keys first (those that work, then those that can work again), then the ended ones.
const STATUS_ORDER = ["active", "blocked", "suspended", "rotated", "expired", "revoked"];

const rank = (key) => {
  const index = STATUS_ORDER.indexOf(key.status);
  return index === -1 ? STATUS_ORDER.length : index;
};

// By status in that order; newest first within each.
export function sortKeys(keys) {
  return [...keys].sort(
    (a, b) => rank(a) - rank(b) || String(b.created_at).localeCompare(String(a.created_at)),
  );
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// "4 keys: 2 active, 1 suspended, 1 revoked." (active always, the others when there are any).
export function summaryText(keys) {
  if (!keys.length) return "You have no keys yet. Create one above to get started.";
  const counts = {};
  for (const key of keys) counts[key.status] = (counts[key.status] || 0) + 1;
  const parts = [`${counts.active || 0} active`];
  const others = Object.keys(counts).filter((status) => status !== "active");
  others.sort((a, b) => rank({ status: a }) - rank({ status: b }));
  for (const status of others) parts.push(`${counts[status]} ${status}`);
  return `${plural(keys.length, "key")}: ${parts.join(", ")}.`;
}
