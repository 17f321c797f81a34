// Waiting and saying how long: the one `sleep`, and durations as people read them.

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** 1234 → "1.2s", 45_000 → "45s". */
export const seconds = (ms: number): string => `${ms < 10_000 ? (ms / 1000).toFixed(1) : Math.round(ms / 1000)}s`;
