// A tiny observable store: one state object, replaced (never mutated) on each change,
// and a hook that re-renders a component when the slice it selects changes.
import { useEffect, useRef, useState } from 'preact/hooks';

type Listener = () => void;

export function createStore<S>(initial: S) {
  let state = initial;
  const listeners = new Set<Listener>();
  return {
    get: () => state,
    set(update: Partial<S> | ((state: S) => Partial<S>)) {
      const patch = typeof update === 'function' ? (update as (s: S) => Partial<S>)(state) : update;
      state = { ...state, ...patch };
      listeners.forEach((listener) => listener());
    },
    subscribe(listener: Listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    /** The selected slice; the latest selector is used, so it may close over props. */
    use<T>(select: (state: S) => T): T {
      const [, rerender] = useState(0);
      const value = select(state);
      const latest = useRef({ select, value });
      latest.current = { select, value };
      useEffect(() => {
        const check = () => {
          if (!Object.is(latest.current.select(state), latest.current.value)) rerender((n) => n + 1);
        };
        check();
        return this.subscribe(check);
      }, []);
      return value;
    },
  };
}
