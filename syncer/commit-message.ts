// Commit messages, composed from the structured result of a plan through the
// repository's template (`commitMessage.subject` and `.body`, with `{{variables}}`).
import { DEFAULT_BODY, DEFAULT_SUBJECT } from '../shared/config.ts';

export interface ImageChange {
  image: string;
  from: string[];
  to: string;
  keyword: string;
}

export interface MessageTemplate {
  subject: string;
  body: string;
}

/**
 * With the default template: `Update gcr.io/acme/app to 1.4.2 (kw)` for one image,
 * `Update 3 images (kw)` for several, and one body line per image:
 * `gcr.io/acme/app 1.4.1 → 1.4.2`. Variables: summary, count, keywords, repository,
 * branch, images, changes (checked when the configuration is read).
 */
export function commitMessage(
  changes: readonly ImageChange[],
  template: MessageTemplate = { subject: DEFAULT_SUBJECT, body: DEFAULT_BODY },
  where: { repository: string; branch: string } = { repository: '', branch: '' },
): string {
  const sorted = [...changes].sort((a, b) => a.image.localeCompare(b.image) || a.keyword.localeCompare(b.keyword));
  const values: Record<string, string> = {
    summary: sorted.length === 1 ? `${sorted[0]!.image} to ${sorted[0]!.to}` : `${sorted.length} images`,
    count: String(sorted.length),
    keywords: [...new Set(changes.map((c) => c.keyword))].sort().join(', '),
    repository: where.repository,
    branch: where.branch,
    images: [...new Set(sorted.map((c) => c.image))].join(', '),
    changes: sorted.map((c) => `${c.image} ${c.from.join(', ') || '(none)'} → ${c.to}`).join('\n'),
  };
  const render = (text: string) => text.replace(/\{\{\s*([^}]*?)\s*\}\}/g, (_, name: string) => values[name] ?? '');
  // A subject is one line, whatever the template or the values hold.
  const subject = render(template.subject).replace(/\s*\n\s*/g, ' ').trim();
  const body = render(template.body).trim();
  return body ? `${subject}\n\n${body}\n` : `${subject}\n`;
}
