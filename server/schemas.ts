// Request bodies and query strings, validated where they enter. A failure
// becomes one ApiError naming the field (`updates[3].tag`) and the rule.
import { z } from 'zod';
import { ApiError } from '../shared/errors.ts';
import { branchProblem } from '../shared/git-ref.ts';
import { digestProblem, keywordProblem, parseImageName, tagProblem } from '../shared/image-ref.ts';
import { TARGET_STATUSES } from '../shared/desired-state.ts';
import { formatPath, problemsFromZod, type PathKey } from '../shared/problems.ts';

export const MAX_BATCH = 500;

/** A string field checked by one of the grammar functions, whose reason becomes the message. */
function grammar(problem: (value: string) => string | undefined) {
  return z.string().superRefine((value, ctx) => {
    const reason = problem(value);
    if (reason) ctx.addIssue({ code: 'custom', message: `${quote(value)} ${reason}` });
  });
}

/** A value quoted for an error message, cut short so a hostile input cannot flood it. */
export function quote(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}

const imageProblem = (value: string) => {
  const parsed = parseImageName(value);
  return parsed.ok ? undefined : parsed.reason;
};

const updateSchema = z.strictObject({
  image: grammar(imageProblem),
  tag: grammar(tagProblem),
  keyword: grammar(keywordProblem),
  repository: z.string().min(1, 'must not be empty').optional(),
  branch: grammar(branchProblem).optional(),
  digest: grammar(digestProblem).optional(),
});

const batchSchema = z.strictObject({
  updates: z
    .array(updateSchema)
    .min(1, 'must hold at least one update')
    .max(MAX_BATCH, `may hold at most ${MAX_BATCH} updates; split the release into several requests`),
});

export type UpdateInput = z.output<typeof updateSchema>;

const CODES = { missing: 'MISSING_FIELD', unknown: 'UNKNOWN_FIELD', invalid: 'INVALID_FIELD' } as const;

function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, prefix: PathKey[] = []): z.output<S> {
  const result = schema.safeParse(value, { reportInput: true });
  if (result.success) return result.data;
  const problem = problemsFromZod(result.error)[0]!;
  const field = formatPath([...prefix, ...problem.path]);
  throw new ApiError(CODES[problem.kind], field ? `${field} ${problem.message}` : problem.message, field || undefined);
}

/** The updates a POST /v1/images body asks for, and whether it was the batch form. */
export function parseImagesBody(body: unknown): { updates: UpdateInput[]; batch: boolean } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ApiError('INVALID_JSON', 'the body must be a JSON object: {"image", "tag", "keyword", …} or {"updates": [ … ]}');
  }
  if ('updates' in body) return { updates: parseOrThrow(batchSchema, body).updates, batch: true };
  return { updates: [parseOrThrow(updateSchema, body)], batch: false };
}

const listQuerySchema = z.strictObject({
  status: z.enum(TARGET_STATUSES as [string, ...string[]], { error: `must be one of ${TARGET_STATUSES.join(', ')}` }).optional(),
  repository: z.string().min(1).optional(),
  branch: z.string().min(1).optional(),
  image: grammar(imageProblem).optional(),
  keyword: z.string().min(1).optional(),
  limit: z.coerce.number({ error: 'must be a whole number' }).int('must be a whole number').min(1, 'must be at least 1').max(1000, 'must be at most 1000').default(100),
  after: z.coerce.number({ error: 'must be a target id' }).int('must be a target id').min(0, 'must be a target id').optional(),
});

/** The filters of GET /v1/images. */
export function parseListQuery(query: unknown): z.output<typeof listQuerySchema> {
  return parseOrThrow(listQuerySchema, query);
}

/** A target id from the path. */
export function parseId(raw: string): number {
  if (!/^[1-9][0-9]{0,15}$/.test(raw)) throw new ApiError('NOT_FOUND', `no image target with id ${quote(raw)}`);
  return Number(raw);
}
