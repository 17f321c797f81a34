// Progress goes to stderr so that stdout stays clean for data (--json, env lines).
export type Log = (message: string) => void;

export const stderrLog: Log = (message) => {
  process.stderr.write(`${message}\n`);
};

export const silentLog: Log = () => {};
