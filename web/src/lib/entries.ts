// What a wallet entry is to this user, where the kind alone does not say.
import type { Entry } from './api';

/**
 * A capture pays the payee and gives the payer back what was held beyond the price; both come
 * in from escrow as `payment_capture`. So a capture coming in on a payment this user held
 * money for (a `payment_hold` with the same reference) is their own hold returning, and any
 * other is money received. Returns the rule for these entries (a hold older than them is not
 * known, and its return reads as received).
 */
export function captureIn(entries: readonly Entry[]): (entry: Entry) => 'hold_returned' | 'received' | null {
  const held = new Set(entries.filter((e) => e.kind === 'payment_hold').map((e) => e.reference));
  return (entry) => {
    if (entry.kind !== 'payment_capture' || entry.direction !== 'in') return null;
    return held.has(entry.reference) ? 'hold_returned' : 'received';
  };
}
