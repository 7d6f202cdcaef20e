// The engine's states, the transitions between them, and the questions everyone else asks about a state.
// Pure: the lifecycle checks every transition against TRANSITIONS; the HTTP layer, the metrics and the docs
// read the same table (docs/contract.md shows it, and a unit test holds the two together).

export const ENGINE_STATES = ['starting', 'ready', 'falling_asleep', 'sleeping', 'waking', 'draining', 'stopped', 'failed'] as const;

export type EngineState = (typeof ENGINE_STATES)[number];

/** `from → allowed to`, each with why it happens. Anything else is a bug, and refused. */
export const TRANSITIONS = {
  starting: { ready: 'vLLM answers /health', sleeping: 'attach mode found vLLM asleep', failed: 'the child exited, or not ready in time', draining: 'shutdown' },
  ready: { falling_asleep: 'POST /sleep or idle sleep', failed: 'the child exited, or the attached vLLM stopped answering', draining: 'shutdown' },
  falling_asleep: { sleeping: 'vLLM confirms it sleeps', ready: 'the sleep failed and vLLM is awake', failed: 'the sleep failed and vLLM is unhealthy', draining: 'shutdown' },
  sleeping: { waking: 'POST /wake or a request (AUTO_WAKE)', failed: 'the child exited, or the attached vLLM stopped answering', draining: 'shutdown' },
  waking: { ready: 'vLLM confirms it is awake (and warm)', sleeping: 'the wake failed and vLLM still sleeps', failed: 'the wake failed and vLLM is unhealthy', draining: 'shutdown' },
  draining: { stopped: 'vLLM stopped (or left running in attach mode)' },
  stopped: {},
  failed: { starting: 'restart after back-off', draining: 'shutdown, or too many failures' },
} as const satisfies Record<EngineState, Partial<Record<EngineState, string>>>;

export function canTransition(from: EngineState, to: EngineState): boolean {
  return to in TRANSITIONS[from];
}

/** vLLM's API process is up: it answers reads (GET /v1/models, /metrics) even while the engine sleeps. */
export function servesReads(s: EngineState): boolean {
  return s === 'ready' || s === 'sleeping' || s === 'falling_asleep' || s === 'waking';
}

/** A generation may be forwarded now. */
export function acceptsWork(s: EngineState): boolean {
  return s === 'ready';
}

/** The gateway is shutting down: nothing new starts. */
export function isStopping(s: EngineState): boolean {
  return s === 'draining' || s === 'stopped';
}

/** Sleep and wake are refused (409) until the engine has been up once. */
export function isDown(s: EngineState): boolean {
  return s === 'starting' || s === 'failed';
}

/** The engine is asleep or on its way there: a request may wake it. */
export function isAsleep(s: EngineState): boolean {
  return s === 'sleeping' || s === 'falling_asleep';
}

export interface Transition {
  from: EngineState;
  to: EngineState;
  at: string;
  reason: string;
  /** 1 for the process's first transition, then 2, 3…: an event id that means the same on every connection. */
  seq: number;
}

/** A transition the table does not allow: a bug in the caller. */
export class IllegalTransition extends Error {
  override readonly name = 'IllegalTransition';
  constructor(
    readonly from: EngineState,
    readonly to: EngineState,
  ) {
    super(`illegal engine transition ${from} → ${to}`);
  }
}

/** One engine's state, changed only along the table. */
export class StateMachine {
  private current: EngineState;
  private changedAt: number;
  private count = 0;

  constructor(initial: EngineState = 'starting') {
    this.current = initial;
    this.changedAt = Date.now();
  }

  get state(): EngineState {
    return this.current;
  }

  get since(): number {
    return this.changedAt;
  }

  /** Moves to `to`: the transition, or null when already there. Throws IllegalTransition off the table. */
  move(to: EngineState, reason: string): Transition | null {
    const from = this.current;
    if (from === to) return null;
    if (!canTransition(from, to)) throw new IllegalTransition(from, to);
    this.current = to;
    this.changedAt = Date.now();
    return { from, to, at: new Date(this.changedAt).toISOString(), reason, seq: ++this.count };
  }
}
