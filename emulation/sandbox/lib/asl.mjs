// Walking an ASL definition: every state, with nested Map ItemProcessor/Iterator and Parallel
// Branches, keyed by name as aws-local-stepfunctions' overrides are.
import { JobError } from './errors.mjs';

/** Yields {name, state} for every state of the definition, nested ones included. */
export function* walkStates(definition) {
  for (const [name, state] of Object.entries(definition?.States ?? {})) {
    yield { name, state };
    if (state.Type === 'Map') {
      const processor = state.ItemProcessor ?? state.Iterator;
      if (processor) yield* walkStates(processor);
    }
    if (state.Type === 'Parallel') {
      for (const branch of state.Branches ?? []) yield* walkStates(branch);
    }
  }
}

/**
 * Returns a Map name -> state. Overrides are keyed by name only, so two states sharing a name
 * (allowed in separate branches by some validators) would silently share a handler: refuse that.
 */
export function statesByName(definition) {
  const byName = new Map();
  for (const { name, state } of walkStates(definition)) {
    if (byName.has(name)) {
      throw new JobError(`state name "${name}" is used more than once; overrides are keyed by state name`);
    }
    byName.set(name, state);
  }
  return byName;
}

/**
 * Expands an override map (state name -> ms, "*" = every eligible state) into the engine's
 * per-state form. A name that is not an eligible state is a mistake in the job: refuse it rather
 * than let a typo silently leave a 5-minute Wait in place.
 */
export function expandOverrides(overrides, byName, eligible, what) {
  const out = {};
  if (!overrides) return out;
  const names = [...byName].filter(([, state]) => eligible(state)).map(([name]) => name);
  if (overrides['*'] !== undefined) {
    for (const name of names) out[name] = checkMs(overrides['*'], '*', what);
  }
  for (const [name, ms] of Object.entries(overrides)) {
    if (name === '*') continue;
    if (!names.includes(name)) {
      throw new JobError(`${what} override "${name}" does not name a ${what === 'wait' ? 'Wait state' : 'state with Retry'} (have: ${names.join(', ') || 'none'})`);
    }
    out[name] = checkMs(ms, name, what);
  }
  return out;
}

function checkMs(ms, name, what) {
  if (!Number.isInteger(ms) || ms < 0) {
    throw new JobError(`${what} override "${name}" must be a non-negative integer of milliseconds, got ${JSON.stringify(ms)}`);
  }
  return ms;
}
