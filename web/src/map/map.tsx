// The map: hand-written SVG over optional raster tiles, no map library.
//
// Without a tile server (the default, and offline) it draws the bundled schematic
// street map of the demo city (city.json); with `tile_url` from /client/config it lays
// {z}/{x}/{y} tiles underneath instead. Either way markers and lines are placed with
// the same Web Mercator projection the tiles use (geo.ts), so they line up.
//
// Drag to pan, wheel or pinch to zoom, tap to choose a point. From the keyboard: the
// arrow keys pan, + and - zoom, and Enter chooses the point under the centre cross.
import type { ComponentChildren } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { LatLng } from '../lib/api';
import { t } from '../lib/i18n';
import city from './city.json';
import { project, TILE_SIZE, tileUrl, unproject } from './geo';

export interface Marker {
  id: string;
  at: LatLng;
  /** `nearby`: a free car as riders may see it before requesting (a cell's centre, no heading). */
  kind: 'pickup' | 'dropoff' | 'car' | 'me' | 'nearby';
  label: string;
  heading?: number | null;
}

interface Props {
  label: string;
  center: LatLng;
  zoom: number;
  tileUrl: string | null;
  attribution: string | null;
  markers: Marker[];
  /** A dashed line between these points (the trip). */
  route?: LatLng[];
  /** Change this to move the view so that `fit` is all on screen. */
  fitKey?: string;
  fit?: LatLng[];
  onTap?: (at: LatLng) => void;
  children?: ComponentChildren;
}

type City = { streets: { n: string; k: string; p: [number, number][] }[]; areas: { n: string; k: string; p: [number, number][] }[] };
const CITY = city as unknown as City;
const ZOOM_MIN = 11;
const ZOOM_MAX = 19;
const TAP_SLOP_PX = 6;
const FIT_ZOOM_MAX = 17;

export function MapView(props: Props) {
  const box = useRef<HTMLDivElement>(null);
  const [size, setSize] = useState({ w: 390, h: 360 });
  const [view, setView] = useState({ center: props.center, zoom: props.zoom });
  const drag = useRef<{ pointers: Map<number, { x: number; y: number }>; moved: boolean; start: { x: number; y: number }; pinch?: { dist: number; zoom: number } }>(
    { pointers: new Map(), moved: false, start: { x: 0, y: 0 } });

  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const measure = () => setSize({ w: element.clientWidth || 390, h: element.clientHeight || 360 });
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(element);
    return () => observer.disconnect();
  }, []);

  // Fit the given points when the caller asks (a new trip, a new offer), and again when
  // the map's box changes size, unless the person has moved the map since: a sheet
  // growing under the map must not undo their zoom.
  const fittedKey = useRef<string | undefined>(undefined);
  const movedByHand = useRef(false);
  useEffect(() => {
    const points = props.fit ?? [];
    if (!points.length) return;
    if (movedByHand.current && fittedKey.current === props.fitKey) return;
    fittedKey.current = props.fitKey;
    movedByHand.current = false;
    if (points.length === 1) { setView((v) => ({ center: points[0], zoom: Math.min(FIT_ZOOM_MAX, Math.max(v.zoom, 15)) })); return; }
    // Closer than street level says nothing more about where things are.
    let zoom = FIT_ZOOM_MAX;
    for (; zoom > ZOOM_MIN; zoom -= 0.5) {
      const xy = points.map((p) => project(p, zoom));
      const w = Math.max(...xy.map((p) => p.x)) - Math.min(...xy.map((p) => p.x));
      const h = Math.max(...xy.map((p) => p.y)) - Math.min(...xy.map((p) => p.y));
      if (w < size.w * 0.7 && h < size.h * 0.6) break;
    }
    const lat = (Math.max(...points.map((p) => p.lat)) + Math.min(...points.map((p) => p.lat))) / 2;
    const lng = (Math.max(...points.map((p) => p.lng)) + Math.min(...points.map((p) => p.lng))) / 2;
    setView({ center: { lat, lng }, zoom });
  }, [props.fitKey, size.w, size.h]);

  const { zoom } = view;
  const middle = project(view.center, zoom);
  const toScreen = (point: LatLng) => {
    const p = project(point, zoom);
    return { x: p.x - middle.x + size.w / 2, y: p.y - middle.y + size.h / 2 };
  };
  const fromScreen = (x: number, y: number) => unproject(middle.x + x - size.w / 2, middle.y + y - size.h / 2, zoom);

  const panBy = (dx: number, dy: number) => {
    movedByHand.current = true;
    setView((v) => {
      const m = project(v.center, v.zoom);
      return { ...v, center: unproject(m.x + dx, m.y + dy, v.zoom) };
    });
  };
  const zoomTo = (next: number) => {
    movedByHand.current = true;
    setView((v) => ({ ...v, zoom: Math.max(ZOOM_MIN, Math.min(ZOOM_MAX, next)) }));
  };

  const onPointerDown = (event: PointerEvent) => {
    if ((event.target as Element).closest('button')) return;
    const state = drag.current;
    (event.currentTarget as Element).setPointerCapture?.(event.pointerId);
    state.pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    if (state.pointers.size === 1) { state.moved = false; state.start = { x: event.clientX, y: event.clientY }; }
    if (state.pointers.size === 2) {
      const [a, b] = [...state.pointers.values()];
      state.pinch = { dist: Math.hypot(a.x - b.x, a.y - b.y) || 1, zoom: view.zoom };
      state.moved = true;
    }
  };
  const onPointerMove = (event: PointerEvent) => {
    const state = drag.current;
    const last = state.pointers.get(event.pointerId);
    if (!last) return;
    state.pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    if (state.pointers.size === 2 && state.pinch) {
      const [a, b] = [...state.pointers.values()];
      zoomTo(state.pinch.zoom + Math.log2(Math.hypot(a.x - b.x, a.y - b.y) / state.pinch.dist));
      return;
    }
    if (!state.moved && Math.hypot(event.clientX - state.start.x, event.clientY - state.start.y) < TAP_SLOP_PX) return;
    state.moved = true;
    panBy(last.x - event.clientX, last.y - event.clientY);
  };
  const onPointerUp = (event: PointerEvent) => {
    const state = drag.current;
    if (!state.pointers.has(event.pointerId)) return;
    state.pointers.delete(event.pointerId);
    if (state.pointers.size < 2) state.pinch = undefined;
    if (state.pointers.size === 0 && !state.moved && props.onTap && event.type === 'pointerup') {
      const rect = box.current!.getBoundingClientRect();
      props.onTap(fromScreen(event.clientX - rect.left, event.clientY - rect.top));
    }
  };
  const onWheel = (event: WheelEvent) => {
    event.preventDefault();
    zoomTo(view.zoom - Math.sign(event.deltaY) * 0.5);
  };
  useEffect(() => {
    // A passive listener could not stop the page from scrolling.
    const element = box.current;
    element?.addEventListener('wheel', onWheel, { passive: false });
    return () => element?.removeEventListener('wheel', onWheel);
  });
  const onKeyDown = (event: KeyboardEvent) => {
    const step = 64;
    const keys: Record<string, () => void> = {
      ArrowLeft: () => panBy(-step, 0), ArrowRight: () => panBy(step, 0), ArrowUp: () => panBy(0, -step), ArrowDown: () => panBy(0, step),
      '+': () => zoomTo(zoom + 1), '=': () => zoomTo(zoom + 1), '-': () => zoomTo(zoom - 1),
      Enter: () => props.onTap?.(view.center), ' ': () => props.onTap?.(view.center),
    };
    const action = keys[event.key];
    if (action) { event.preventDefault(); action(); }
  };

  const tiles = useMemo(() => {
    if (!props.tileUrl) return [];
    const z = Math.max(0, Math.min(ZOOM_MAX, Math.round(zoom)));
    const scale = 2 ** (zoom - z);
    const m = project(view.center, z);
    const left = m.x - size.w / 2 / scale;
    const top = m.y - size.h / 2 / scale;
    const count = 2 ** z;
    const out: { key: string; url: string; x: number; y: number; size: number }[] = [];
    for (let tx = Math.floor(left / TILE_SIZE); tx <= Math.floor((left + size.w / scale) / TILE_SIZE); tx++) {
      for (let ty = Math.floor(top / TILE_SIZE); ty <= Math.floor((top + size.h / scale) / TILE_SIZE); ty++) {
        if (ty < 0 || ty >= count) continue;
        const wrapped = ((tx % count) + count) % count;
        out.push({
          key: `${z}/${tx}/${ty}`, url: tileUrl(props.tileUrl, z, wrapped, ty),
          x: (tx * TILE_SIZE - left) * scale, y: (ty * TILE_SIZE - top) * scale, size: TILE_SIZE * scale,
        });
      }
    }
    return out;
  }, [props.tileUrl, zoom, view.center.lat, view.center.lng, size.w, size.h]);

  const path = (points: [number, number][], close = false) =>
    points.map(([lat, lng], i) => { const p = toScreen({ lat, lng }); return `${i ? 'L' : 'M'}${p.x.toFixed(1)} ${p.y.toFixed(1)}`; }).join('') + (close ? 'Z' : '');
  const showCity = !props.tileUrl;
  // One label per street, at the middle of its part on screen, skipping any that would
  // overlap one already placed.
  const streetLabels = () => {
    const placed: { x: number; y: number; name: string; half: number }[] = [];
    for (const street of CITY.streets) {
      if (street.k === 'minor' && zoom < 16) continue;
      const visible = street.p.map(([lat, lng]) => toScreen({ lat, lng }))
        .filter((p) => p.x > 40 && p.x < size.w - 40 && p.y > 20 && p.y < size.h - 30);
      if (!visible.length) continue;
      const p = visible[Math.floor(visible.length / 2)];
      const half = street.n.length * 3.2;
      if (placed.some((q) => Math.abs(q.x - p.x) < q.half + half && Math.abs(q.y - p.y) < 22)) continue;
      placed.push({ x: p.x, y: p.y - 4, name: street.n, half });
    }
    return placed;
  };
  const labelsShown = zoom >= 14.5;

  return (
    <div class="map" ref={box} tabIndex={0} role="application" aria-roledescription={t('map.role')}
      aria-label={`${props.label}. ${t('map.keys')}`} data-testid="map" data-zoom={zoom.toFixed(1)}
      onPointerDown={onPointerDown} onPointerMove={onPointerMove} onPointerUp={onPointerUp} onPointerCancel={onPointerUp}
      onKeyDown={onKeyDown}>
      {tiles.map((tile) => (
        <img key={tile.key} class="map-tile" src={tile.url} alt="" draggable={false} data-testid="map-tile"
          style={{ left: `${tile.x}px`, top: `${tile.y}px`, width: `${tile.size + 0.5}px`, height: `${tile.size + 0.5}px` }} />
      ))}
      <svg class="map-svg" width={size.w} height={size.h} viewBox={`0 0 ${size.w} ${size.h}`} aria-hidden="true">
        {showCity && CITY.areas.map((area) => <path class={`map-area ${area.k}`} d={path(area.p, true)} />)}
        {showCity && CITY.streets.map((street) => <path class={`map-street ${street.k}`} d={path(street.p)} />)}
        {showCity && labelsShown && streetLabels().map((label) => <text class="map-label" x={label.x} y={label.y}>{label.name}</text>)}
        {props.route && props.route.length > 1 && (
          <path class="map-route" d={path(props.route.map((p) => [p.lat, p.lng] as [number, number]))} />
        )}
        {props.markers.map((marker) => {
          const p = toScreen(marker.at);
          return (
            <g class={`map-marker ${marker.kind}`} transform={`translate(${p.x.toFixed(1)} ${p.y.toFixed(1)})`}
              data-testid={`marker-${marker.kind}`} data-lat={marker.at.lat.toFixed(6)} data-lng={marker.at.lng.toFixed(6)}>
              <title>{marker.label}</title>
              {marker.kind === 'nearby'
                ? <g><circle r="13" fill="#fff" stroke="#1f2937" stroke-opacity="0.35" stroke-width="1.5" />
                  <text y="5.5" text-anchor="middle" font-size="15">🚗</text></g>
                : marker.kind === 'car' || marker.kind === 'me'
                ? <g transform={`rotate(${marker.heading ?? 0})`}><circle r="15" class="car-halo" /><path d="M-6 8 L0 -10 L6 8 L0 4 Z" class="car-arrow" /></g>
                : <g><path d="M0 0 C-4 -10 -12 -14 -12 -22 A12 12 0 1 1 12 -22 C12 -14 4 -10 0 0 Z" class="pin" />
                  <text y="-18" class="pin-text">{marker.kind === 'pickup' ? 'A' : 'B'}</text></g>}
            </g>
          );
        })}
      </svg>
      {props.onTap && <span class="map-cross" aria-hidden="true">+</span>}
      <div class="map-controls">
        <button type="button" aria-label={t('map.zoom_in')} onClick={() => zoomTo(zoom + 1)}>+</button>
        <button type="button" aria-label={t('map.zoom_out')} onClick={() => zoomTo(zoom - 1)}>−</button>
      </div>
      <small class="map-credit">{props.tileUrl ? props.attribution ?? '' : t('map.schematic')}</small>
      {props.children}
    </div>
  );
}

/** The name of the bundled map's street nearest to a point, for labelling pickups. */
export function nearestStreet(at: LatLng): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  const cos = Math.cos(at.lat * Math.PI / 180);
  for (const street of CITY.streets) {
    for (let i = 1; i < street.p.length; i++) {
      const [ay, ax] = street.p[i - 1];
      const [by, bx] = street.p[i];
      // Distance to the segment, in a local flat frame (degrees, longitude shrunk).
      const px = (at.lng - ax) * cos, py = at.lat - ay, dx = (bx - ax) * cos, dy = by - ay;
      const along = Math.max(0, Math.min(1, (px * dx + py * dy) / (dx * dx + dy * dy || 1)));
      const distance = Math.hypot(px - along * dx, py - along * dy);
      if (distance < bestDistance) { bestDistance = distance; best = street.n; }
    }
  }
  // Farther than ~400 m from any bundled street: the map does not know the place.
  return bestDistance < 0.0036 ? best : null;
}
