// hls.js's light build (no subtitles, alternate audio or DRM, which a live room has none of)
// has the full build's types; its package names no types for the `./light` entry.
declare module 'hls.js/light' {
  export * from 'hls.js';
  export { default } from 'hls.js';
}
