// The keys table's order and the sentence above it.

const STATUS_ORDER = { active: 0, expired: 1, revoked: 2 };

// Active keys first, then expired, then revoked; newest first within each.
export function sortKeys(keys) {
  return [...keys].sort(
    (a, b) =>
      (STATUS_ORDER[a.status] ?? 3) - (STATUS_ORDER[b.status] ?? 3) ||
      String(b.created_at).localeCompare(String(a.created_at)),
  );
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export function summaryText(keys) {
  if (!keys.length) return "You have no keys yet. Create one above to get started.";
  const counts = { active: 0, revoked: 0, expired: 0 };
  for (const key of keys) counts[key.status] = (counts[key.status] || 0) + 1;
  const parts = [`${counts.active} active`];
  if (counts.expired) parts.push(`${counts.expired} expired`);
  if (counts.revoked) parts.push(`${counts.revoked} revoked`);
  return `${plural(keys.length, "key")}: ${parts.join(", ")}.`;
}
