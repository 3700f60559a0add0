// Web Mercator (EPSG:3857) in "world pixels": at zoom z the world is 256 · 2^z pixels
// square, the same grid every {z}/{x}/{y} raster tile server uses, so points drawn
// with this line up with tiles exactly.
import type { LatLng } from '../lib/api';

export const TILE_SIZE = 256;
/** Web Mercator is cut off here so that the world is square. */
const LAT_MAX = 85.05112878;

export function worldSize(zoom: number): number {
  return TILE_SIZE * 2 ** zoom;
}

/** A point's pixel position in the world at `zoom` (x east, y south). */
export function project(point: LatLng, zoom: number): { x: number; y: number } {
  const size = worldSize(zoom);
  const lat = Math.max(-LAT_MAX, Math.min(LAT_MAX, point.lat)) * Math.PI / 180;
  const x = (point.lng + 180) / 360 * size;
  const y = (1 - Math.log(Math.tan(lat) + 1 / Math.cos(lat)) / Math.PI) / 2 * size;
  return { x, y };
}

/** The inverse of `project`. */
export function unproject(x: number, y: number, zoom: number): LatLng {
  const size = worldSize(zoom);
  const lng = x / size * 360 - 180;
  const lat = Math.atan(Math.sinh(Math.PI * (1 - 2 * y / size))) * 180 / Math.PI;
  return { lat, lng };
}

/** Great-circle distance in metres. */
export function distanceM(a: LatLng, b: LatLng): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLng = (b.lng - a.lng) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLng / 2) ** 2;
  return 2 * 6_371_000 * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** Degrees clockwise from north, from `a` towards `b`. */
export function bearing(a: LatLng, b: LatLng): number {
  const rad = Math.PI / 180;
  const y = Math.sin((b.lng - a.lng) * rad) * Math.cos(b.lat * rad);
  const x = Math.cos(a.lat * rad) * Math.sin(b.lat * rad) - Math.sin(a.lat * rad) * Math.cos(b.lat * rad) * Math.cos((b.lng - a.lng) * rad);
  return (Math.atan2(y, x) / rad + 360) % 360;
}

/** The point `fraction` of the way from `a` to `b` (straight in degrees; fine over a city). */
export function between(a: LatLng, b: LatLng, fraction: number): LatLng {
  return { lat: a.lat + (b.lat - a.lat) * fraction, lng: a.lng + (b.lng - a.lng) * fraction };
}

/** A tile template filled in for one tile. */
export function tileUrl(template: string, z: number, x: number, y: number): string {
  return template.replace('{z}', String(z)).replace('{x}', String(x)).replace('{y}', String(y));
}
