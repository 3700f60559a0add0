// A tiny observable store: one state object, replaced (never mutated) on each change,
// and a hook that re-renders a component when the slice it selects changes.
import { useEffect, useState } from 'preact/hooks';

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
    use<T>(select: (state: S) => T): T {
      const [value, setValue] = useState(() => select(state));
      useEffect(() => {
        const check = () => setValue(() => select(state));
        check();
        return this.subscribe(check);
      }, []);
      return value;
    },
  };
}
