// Validation of edited files before anything is committed: YAML must parse
// and still hold the new reference, jsonnet must evaluate, and the
// repository's own command (e.g. `kustomize build`) must pass.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { isScalar, parseAllDocuments, visit } from 'yaml';
import { SyncError } from '../shared/errors.ts';
import { yamlErrorText } from '../shared/problems.ts';
import type { LineChange } from './plan-edits.ts';

const run = promisify(execFile);

export interface EditedFile {
  path: string;
  /** The new content, one character per byte (latin1). */
  content: string;
  changes: LineChange[];
}

export interface ValidateOptions {
  /** Working copy root: the jsonnet import path and the command's folder. */
  dir: string;
  command?: readonly string[] | undefined;
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

/**
 * `file:line:col: reason` from jsonnet's stderr, which says either
 * `STATIC ERROR: f:1:11: reason` or `RUNTIME ERROR: reason` then `\tf:(2:1)-(3:18)`.
 */
export function jsonnetError(stderr: string, fallbackPath: string): string {
  const staticError = /STATIC ERROR: (\S+?):(\d+):(\d+)(?:-\d+)?: (.+)/.exec(stderr);
  if (staticError) return `${staticError[1]}:${staticError[2]}:${staticError[3]}: ${staticError[4]!.trim()}`;
  const runtime = /RUNTIME ERROR: (.+)/.exec(stderr);
  const where = /(\S+?):\(?(\d+):(\d+)\)?/.exec(stderr.slice(runtime ? runtime.index + runtime[0].length : 0));
  const reason = runtime?.[1]?.trim() ?? firstLines(stderr, 2);
  return where ? `${where[1]}:${where[2]}:${where[3]}: ${reason}` : `${fallbackPath}: ${reason}`;
}

function firstLines(text: string, n: number): string {
  return text.trim().split('\n').slice(0, n).join(' ').replace(/\s+/g, ' ');
}

/** Why a YAML file is broken or no longer holds the new references, or undefined when it is fine. */
export function yamlProblem(file: EditedFile): string | undefined {
  const text = Buffer.from(file.content, 'latin1').toString('utf8');
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [docs];
  for (const doc of list) {
    const error = doc.errors[0];
    if (error) {
      const at = error.linePos?.[0];
      return `${file.path}:${at?.line ?? '?'}:${at?.col ?? '?'}: the edit leaves invalid YAML: ${yamlErrorText(error.message)}`;
    }
  }
  // `image: a:1# kw` parses, with the comment glued to the value: check what YAML actually reads.
  const scalars: string[] = [];
  for (const doc of list) {
    visit(doc, {
      Scalar(_key, node) {
        if (isScalar(node) && typeof node.value === 'string') scalars.push(node.value);
      },
    });
  }
  for (const change of file.changes) {
    for (const reference of change.references) {
      if (!scalars.some((value) => value.includes(reference))) {
        return `${file.path}:${change.line}: after the edit, YAML does not read "${reference}" on this line; check its quoting and comment`;
      }
    }
  }
  return undefined;
}

/** Validates every edited file; throws VALIDATION_FAILED naming the file, line and reason. */
export async function validateFiles(files: readonly EditedFile[], options: ValidateOptions): Promise<void> {
  const exec = { cwd: options.dir, timeout: options.timeoutMs, maxBuffer: 64 * 1024 * 1024, signal: options.signal };
  for (const file of files) {
    if (/\.ya?ml$/.test(file.path)) {
      const problem = yamlProblem(file);
      if (problem) throw new SyncError('VALIDATION_FAILED', problem);
    } else if (/\.(jsonnet|libsonnet)$/.test(file.path)) {
      // A .jsonnet file is evaluated (imports resolve from the repository root); a library alone may
      // be a function, so .libsonnet is parsed only.
      const [cmd, args] = file.path.endsWith('.jsonnet')
        ? ['jsonnet', ['-J', options.dir, '--', file.path]]
        : ['jsonnetfmt', ['--', file.path]];
      try {
        await run(cmd, args, exec);
      } catch (err) {
        const e = err as { stderr?: string; code?: string | number };
        if (e.code === 'ENOENT') throw new SyncError('VALIDATION_FAILED', `${cmd} is not installed; it is needed to check ${file.path}`);
        throw new SyncError('VALIDATION_FAILED', `${jsonnetError(e.stderr ?? String(err), file.path)} (the edit leaves jsonnet that does not evaluate)`);
      }
    }
  }
  if (options.command && options.command.length > 0) {
    const [cmd, ...args] = options.command;
    try {
      await run(cmd!, args, exec);
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; code?: string | number };
      throw new SyncError(
        'VALIDATION_FAILED',
        `the validate command "${options.command.join(' ')}" failed after the edit (exit ${e.code ?? '?'}): ${firstLines(e.stderr || e.stdout || String(err), 3)}`,
      );
    }
  }
}
