// vLLM version strings ("0.19.1", "v0.17.0", "0.11.0rc2.dev42+g1a2b3c.cu128"): compared by major.minor.patch.

/** The numeric parts of the first `N.N[.N]` in the string, or undefined when there is none. */
export function parseVersion(v: string | undefined): [number, number, number] | undefined {
  const m = v?.match(/(\d+)\.(\d+)(?:\.(\d+))?/);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

/** True when `version` is at least `min`; an unparseable version is not. */
export function versionAtLeast(version: string | undefined, min: string): boolean {
  const a = parseVersion(version);
  const b = parseVersion(min);
  if (!a || !b) return false;
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! > b[i]!;
  return true;
}
