// Golden edit fixtures: test/fixtures/edits/<case>/{input,expected}/ compared
// whole, byte for byte, plus the outcome expected for each target (case.json).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { commitMessage } from '../../syncer/commit-message.ts';
import { planEdits, splitLines, type Candidate, type PlanTarget } from '../../syncer/plan-edits.ts';

const ROOT = fileURLToPath(new URL('../fixtures/edits/', import.meta.url));

function readTree(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = path.join(entry.parentPath, entry.name);
    // latin1 maps every byte to one character and back: a byte-exact round trip.
    files.set(path.relative(dir, full), readFileSync(full, 'latin1'));
  }
  return files;
}

const cases = readdirSync(ROOT).sort();

describe('golden edits', () => {
  it('has at least 15 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(15);
  });

  it.each(cases)('%s', (name) => {
    const spec = JSON.parse(readFileSync(path.join(ROOT, name, 'case.json'), 'utf8')) as {
      targets: PlanTarget[];
      outcomes: Record<string, string>;
    };
    const input = readTree(path.join(ROOT, name, 'input'));
    const expected = readTree(path.join(ROOT, name, 'expected'));
    // Every line is a candidate: the plan alone must decide what is marked.
    const candidates: Candidate[] = [...input].flatMap(([p, content]) => splitLines(content).map((_, i) => ({ path: p, line: i + 1 })));
    const plan = planEdits(input, candidates, spec.targets);
    const result = new Map(input);
    for (const [p, content] of plan.files) result.set(p, content);
    expect(Object.fromEntries(result)).toEqual(Object.fromEntries(expected));
    expect(Object.fromEntries(plan.targets.map((t) => [String(t.targetId), t.outcome]))).toEqual(spec.outcomes);
    // A file that does not change is not rewritten.
    for (const [p] of plan.files) expect(input.get(p)).not.toBe(expected.get(p));
  });
});

describe('commitMessage', () => {
  it('names one image in the subject and lists every change in the body', () => {
    expect(commitMessage([{ image: 'gcr.io/acme/app', from: ['1.4.1'], to: '1.4.2', keyword: 'image-automation-prod' }])).toBe(
      'Update gcr.io/acme/app to 1.4.2 (image-automation-prod)\n\ngcr.io/acme/app 1.4.1 → 1.4.2\n',
    );
    expect(
      commitMessage([
        { image: 'gcr.io/acme/web', from: ['2.0'], to: '2.1', keyword: 'image-automation-prod' },
        { image: 'gcr.io/acme/api', from: ['1.0', '0.9'], to: '1.1', keyword: 'image-automation-prod' },
        { image: 'gcr.io/acme/job', from: ['(none)'], to: '3', keyword: 'image-automation-prod' },
      ]),
    ).toBe(
      'Update 3 images (image-automation-prod)\n\ngcr.io/acme/api 1.0, 0.9 → 1.1\ngcr.io/acme/job (none) → 3\ngcr.io/acme/web 2.0 → 2.1\n',
    );
  });
});

describe('validation messages', () => {
  it('reads file, line and reason from jsonnet errors', async () => {
    const { jsonnetError } = await import('../../syncer/validate-files.ts');
    expect(jsonnetError('RUNTIME ERROR: pinned\n\tenv/prod.jsonnet:(2:1)-(3:18)\t\n', 'x')).toBe('env/prod.jsonnet:2:1: pinned');
    expect(jsonnetError('STATIC ERROR: env/bad.jsonnet:1:11: unexpected: ";" while parsing terminal\n', 'x')).toBe(
      'env/bad.jsonnet:1:11: unexpected: ";" while parsing terminal',
    );
  });

  it('finds YAML that no longer holds the new reference', async () => {
    const { yamlProblem } = await import('../../syncer/validate-files.ts');
    const change = { path: 'a.yaml', line: 1, before: '', after: '', references: ['gcr.io/acme/app:2'] };
    expect(yamlProblem({ path: 'a.yaml', content: 'image: gcr.io/acme/app:2 # k\n', changes: [change] })).toBeUndefined();
    expect(yamlProblem({ path: 'a.yaml', content: 'image: "gcr.io/acme/app:2\n', changes: [change] })).toBe(
      'a.yaml:2:1: the edit leaves invalid YAML: Missing closing "quote',
    );
    expect(yamlProblem({ path: 'a.yaml', content: 'image: other:1 # k\n', changes: [change] })).toBe(
      'a.yaml:1: after the edit, YAML does not read "gcr.io/acme/app:2" on this line; check its quoting and comment',
    );
  });
});
