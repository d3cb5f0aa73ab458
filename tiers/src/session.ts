/**
 * Preview session states and the transitions between them.
 *
 * `queued → provisioning → starting → ready ⇄ suspended → stopping → ended`, plus `failed` and
 * `migrating` (re-placement after node loss). `TRANSITIONS` is the single table; `canTransition` and
 * `Transition<From>` make an illegal move a type error or a rejected update.
 *
 * @example
 * const next: NextState<'ready'> = 'suspended'; // ok
 * // const bad: NextState<'ended'> = 'ready';   // does not compile
 */
export const TRANSITIONS = {
  queued: ['provisioning', 'stopping', 'failed'],
  provisioning: ['starting', 'ready', 'migrating', 'stopping', 'failed'],
  starting: ['ready', 'migrating', 'stopping', 'failed'],
  ready: ['suspended', 'starting', 'migrating', 'stopping', 'failed'],
  suspended: ['starting', 'ready', 'migrating', 'stopping', 'failed'],
  migrating: ['provisioning', 'starting', 'ready', 'stopping', 'failed'],
  stopping: ['ended', 'failed'],
  failed: ['migrating', 'stopping', 'ended'],
  ended: [],
} as const satisfies Record<string, readonly string[]>;

export type SessionState = keyof typeof TRANSITIONS;
export type NextState<S extends SessionState> = (typeof TRANSITIONS)[S][number];
export const SESSION_STATES = Object.keys(TRANSITIONS) as SessionState[];
export const LIVE_STATES: readonly SessionState[] = [
  'queued',
  'provisioning',
  'starting',
  'ready',
  'suspended',
  'migrating',
];

export function canTransition(from: SessionState, to: SessionState): boolean {
  return (TRANSITIONS[from] as readonly string[]).includes(to);
}

/** The states from which `to` may be entered: what a guarded `UPDATE ... WHERE state = ANY(...)` names. */
export function statesLeadingTo(to: SessionState): SessionState[] {
  return SESSION_STATES.filter((s) => canTransition(s, to));
}
