// Commit messages, composed from the structured result of a plan.

export interface ImageChange {
  image: string;
  from: string[];
  to: string;
  keyword: string;
}

/**
 * `Update gcr.io/acme/app to 1.4.2 (kw)` for one image, `Update 3 images (kw)`
 * for several, and one body line per image: `gcr.io/acme/app 1.4.1 → 1.4.2`.
 */
export function commitMessage(changes: readonly ImageChange[]): string {
  const keywords = [...new Set(changes.map((c) => c.keyword))].sort().join(', ');
  const sorted = [...changes].sort((a, b) => a.image.localeCompare(b.image) || a.keyword.localeCompare(b.keyword));
  const subject =
    sorted.length === 1
      ? `Update ${sorted[0]!.image} to ${sorted[0]!.to} (${keywords})`
      : `Update ${sorted.length} images (${keywords})`;
  const body = sorted.map((c) => `${c.image} ${c.from.join(', ') || '(none)'} → ${c.to}`).join('\n');
  return `${subject}\n\n${body}\n`;
}
