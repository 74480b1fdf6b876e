import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests spawn real processes and git servers; a hung one should fail, not stall CI.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
