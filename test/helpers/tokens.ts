// Tokens the tests configure, each with its plain value and the scope it is given.
import { createHash } from 'node:crypto';

const sha = (token: string) => createHash('sha256').update(token).digest('hex');

export const TOKENS = {
  ci: 'iu_test-ci-token-0123456789',
  other: 'iu_test-other-token-0123456789',
  admin: 'iu_test-admin-token-0123456789',
} as const;

/**
 * The `tokens:` section for TOKENS: ci may write gcr.io/acme/** with image-automation-* to gitops;
 * other only "infra" (left out when only gitops is configured: its scope would match nothing).
 */
export function tokensYaml({ gitopsOnly = false } = {}): string {
  const yaml = `tokens:
  - name: ci
    sha256: ${sha(TOKENS.ci)}
    repositories: ["gitops"]
    images: ["gcr.io/acme/**", "localhost:5000/**"]
    keywords: ["image-automation-*"]
  - name: other
    sha256: ${sha(TOKENS.other)}
    repositories: ["infra"]
    images: ["docker.io/library/*"]
    keywords: ["*"]
  - name: admin
    sha256: ${sha(TOKENS.admin)}
    repositories: ["*"]
    images: ["**"]
    keywords: ["*"]
    admin: true
`;
  return gitopsOnly ? yaml.replace(/ {2}- name: other[\s\S]*?(?= {2}- name: admin)/, '') : yaml;
}
