// Branch names as `git check-ref-format --branch` accepts them, checked
// without a shell so that nothing a client sends reaches git unvalidated.

/** Why a branch name is invalid, or undefined when git would accept it. */
export function branchProblem(branch: string): string | undefined {
  if (branch.length === 0) return 'must not be empty';
  if (branch.length > 255) return 'must be at most 255 characters';
  if (/[\u0000-\u0020\u007f~^:?*[\\]/.test(branch)) {
    return 'must not contain spaces, control characters or any of ~ ^ : ? * [ \\';
  }
  if (branch.startsWith('-')) return 'must not start with "-"';
  if (branch === '@' || branch.includes('@{')) return 'must not be "@" or contain "@{"';
  if (branch.includes('..')) return 'must not contain ".."';
  if (branch.startsWith('/') || branch.endsWith('/') || branch.includes('//')) {
    return 'must not start or end with "/" or contain "//"';
  }
  if (branch.endsWith('.')) return 'must not end with "."';
  for (const part of branch.split('/')) {
    if (part.startsWith('.')) return 'no path component may start with "."';
    if (part.endsWith('.lock')) return 'no path component may end with ".lock"';
  }
  return undefined;
}
