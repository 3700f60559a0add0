// A ride's statuses and how far along each is: the one list the rides screens, the ride
// card in chats and the client state (which keeps a ride's furthest state) all read.
import { RIDE_STATUSES } from './api';
import type { RideStatus } from './api';

/** The trip's five steps, as the progress bars show them. */
export const TRIP_STEPS: readonly RideStatus[] = RIDE_STATUSES.slice(0, 5);
/** The states a ride ends in. */
export const FINAL: ReadonlySet<string> = new Set<RideStatus>(['completed', 'cancelled', 'no_driver']);

export function isRideStatus(value: unknown): value is RideStatus {
  return typeof value === 'string' && (RIDE_STATUSES as readonly string[]).includes(value);
}

/** How far along a ride in `status` is (a ride only moves forward; every end is the last step). */
export function rideStep(status: RideStatus): number {
  return FINAL.has(status) ? TRIP_STEPS.length - 1 : TRIP_STEPS.indexOf(status);
}
