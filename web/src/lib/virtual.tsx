// A virtualised, bottom-anchored list for chat: only the rows near the viewport are in
// the DOM, positioned by measured heights (estimated until measured). It sticks to the
// bottom while the reader is there, keeps the reader's place when older rows are
// prepended, and asks for more when scrolled near the top.
import type { ComponentChildren } from 'preact';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';

interface Props<T> {
  items: T[];
  keyOf: (item: T) => string;
  render: (item: T) => ComponentChildren;
  onNearTop?: () => void;
  estimate?: number;
  label: string;
}

const OVERSCAN_PX = 600;

export function VirtualList<T>({ items, keyOf, render, onNearTop, estimate = 64, label }: Props<T>) {
  const scroller = useRef<HTMLDivElement>(null);
  const heights = useRef(new Map<string, number>());
  const [scrollTop, setScrollTop] = useState(0);
  const [viewport, setViewport] = useState(800);
  const [, setMeasured] = useState(0);
  const atBottom = useRef(true);
  const previousFirst = useRef<string | null>(null);
  const previousOffsets = useRef(new Map<string, number>());

  const offsets: number[] = [];
  let total = 0;
  for (const item of items) {
    offsets.push(total);
    total += heights.current.get(keyOf(item)) ?? estimate;
  }
  let start = 0;
  let low = 0, high = items.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    const bottom = offsets[mid] + (heights.current.get(keyOf(items[mid])) ?? estimate);
    if (bottom < scrollTop - OVERSCAN_PX) low = mid + 1; else high = mid;
  }
  start = low;
  let end = start;
  while (end < items.length && offsets[end] < scrollTop + viewport + OVERSCAN_PX) end++;

  useLayoutEffect(() => {
    const element = scroller.current;
    if (!element) return;
    let changed = false;
    element.querySelectorAll<HTMLElement>('[data-key]').forEach((row) => {
      const key = row.dataset.key!;
      const height = row.offsetHeight;
      if (height && heights.current.get(key) !== height) { heights.current.set(key, height); changed = true; }
    });
    // Older rows were put in front: move the view down by the height they added.
    const first = items.length ? keyOf(items[0]) : null;
    if (previousFirst.current && first !== previousFirst.current && !atBottom.current) {
      const anchor = previousFirst.current;
      const index = items.findIndex((item) => keyOf(item) === anchor);
      if (index > 0) element.scrollTop += offsets[index] - (previousOffsets.current.get(anchor) ?? 0);
    }
    previousFirst.current = first;
    previousOffsets.current = new Map(first ? [[first, 0]] : []);
    if (atBottom.current) element.scrollTop = element.scrollHeight;
    if (changed) setMeasured((n) => n + 1);
  });

  useEffect(() => {
    const element = scroller.current;
    if (!element) return;
    const resize = new ResizeObserver(() => {
      setViewport(element.clientHeight);
      if (atBottom.current) element.scrollTop = element.scrollHeight;
    });
    resize.observe(element);
    return () => resize.disconnect();
  }, []);

  const onScroll = () => {
    const element = scroller.current!;
    atBottom.current = element.scrollHeight - element.scrollTop - element.clientHeight < 40;
    setScrollTop(element.scrollTop);
    if (element.scrollTop < 300) onNearTop?.();
  };

  return (
    <div class="virtual" ref={scroller} onScroll={onScroll} role="log" aria-label={label} aria-live="polite" tabIndex={0}>
      <div style={{ height: total, position: 'relative' }}>
        {items.slice(start, end).map((item, i) => (
          <div key={keyOf(item)} data-key={keyOf(item)} class="virtual-row" style={{ top: offsets[start + i] }}>
            {render(item)}
          </div>
        ))}
      </div>
    </div>
  );
}
