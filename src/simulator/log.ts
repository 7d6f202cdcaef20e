// vLLM's log line format: `(APIServer pid=N) INFO MM-DD HH:MM:SS [file.py:LINE] msg` (docs/vllm.md, Startup and readiness).
export type Level = 'INFO' | 'WARNING' | 'ERROR' | 'DEBUG';

export function createVllmLog(role: string) {
  const stamp = () => {
    const d = new Date();
    const p = (n: number) => String(n).padStart(2, '0');
    return `${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  };
  return (level: Level, where: string, msg: string): void => {
    const line = `(${role} pid=${process.pid}) ${level} ${stamp()} [${where}] ${msg}\n`;
    (level === 'ERROR' || level === 'WARNING' ? process.stderr : process.stdout).write(line);
  };
}
export type VllmLog = ReturnType<typeof createVllmLog>;
