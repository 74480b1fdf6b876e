// A request budget for one registry: at most `concurrency` requests in flight
// and at most `perSecond` started per second (a token bucket with a burst of
// one second's worth), so that a release of hundreds of images cannot hammer it.

export interface Budget {
  /** Waits for a slot; the returned function gives it back (calling it twice is harmless). */
  acquire(signal?: AbortSignal): Promise<() => void>;
}

export function createBudget(concurrency: number, perSecond: number, now: () => number = performance.now.bind(performance)): Budget {
  let active = 0;
  const waiting: Array<() => void> = [];
  let tokens = perSecond;
  let refilledAt = now();

  function release(): void {
    const next = waiting.shift();
    // The slot passes straight to the next waiter, so no newcomer can slip in between.
    if (next) next();
    else active--;
  }

  async function takeToken(signal?: AbortSignal): Promise<void> {
    for (;;) {
      const t = now();
      tokens = Math.min(perSecond, tokens + ((t - refilledAt) / 1000) * perSecond);
      refilledAt = t;
      if (tokens >= 1) {
        tokens -= 1;
        return;
      }
      const waitMs = Math.ceil(((1 - tokens) / perSecond) * 1000);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, waitMs);
        signal?.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)), { once: true });
      });
    }
  }

  return {
    async acquire(signal) {
      if (active < concurrency) active++;
      else await new Promise<void>((resolve) => waiting.push(resolve));
      let released = false;
      const give = () => {
        if (!released) {
          released = true;
          release();
        }
      };
      try {
        await takeToken(signal);
      } catch (err) {
        give();
        throw err;
      }
      return give;
    },
  };
}
