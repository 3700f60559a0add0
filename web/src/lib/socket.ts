// The one real-time socket, speaking the gateway's protocol (crates/server/src/gateway.rs).
//
// After `hello` the client sends `resume` with the last cursor it saw (the hello cursor on
// a fresh start; kept per tab in sessionStorage) and gets every durable event after it,
// then live ones. A dropped connection reconnects with backoff and resumes from the same
// cursor, so nothing is missed; a `resync` (the cursor's events were pruned) reloads the
// state over HTTP and follows on from the new cursor. Sends still pending go out again
// after each `resumed` with the same `client_id`, so the server stores each once.
//
// This module knows the protocol only; what an event does to the client's state is
// `data.ts`'s, through the handlers it passes in.
import { getToken, onUnauthenticated } from './api';
import type { Pending } from './data';

/** What the socket hands to the client's state. */
export interface SocketHandlers {
  /** A durable event (it came with a cursor), in cursor order. */
  event(type: string, data: any): void;
  /** An ephemeral frame (`driver.location`, `typing`): no cursor, never replayed. */
  ephemeral(type: string, data: any): void;
  /** The server stored a message this client sent. */
  ack(message: any): void;
  /** The server refused a send (`clientId`), with its problem. */
  sendFailed(clientId: string, problem: any): void;
  /** Reload the state over HTTP: a fresh start, or a `resync`. */
  reload(): void;
  connection(state: 'connecting' | 'online' | 'offline'): void;
  /** Every send not yet acknowledged, in the order it was made. */
  pendingSends(): Pending[];
}

const CURSOR_KEY = 'plaza.cursor';
/** The close code the server sends when the socket's session ended. */
const SESSION_ENDED_CLOSE_CODE = 4001;

export class Socket {
  private ws: WebSocket | null = null;
  private running = false;
  private attempt = 0;
  private timer = 0;
  private pingTimer = 0;
  private pongDeadline = 0;
  private cursor: string | null = sessionStorage.getItem(CURSOR_KEY);
  private first = true;
  private live = false;

  constructor(private readonly handlers: SocketHandlers) {}

  start() {
    if (this.running) return;
    this.running = true;
    this.first = true;
    this.cursor = sessionStorage.getItem(CURSOR_KEY);
    this.connect();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    clearInterval(this.pingTimer);
    this.ws?.close();
    this.ws = null;
  }

  /** Forgets the cursor kept for this tab (a signed-out session starts afresh). */
  forgetCursor() {
    sessionStorage.removeItem(CURSOR_KEY);
  }

  /** The browser says the network went away or came back. */
  networkChanged(online: boolean) {
    if (!this.running) return;
    if (!online) { this.ws?.close(); this.offline(); }
    else { clearTimeout(this.timer); this.attempt = 0; if (!this.ws) this.connect(); }
  }

  frame(frame: object): boolean {
    if (this.ws?.readyState !== WebSocket.OPEN || !this.live) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  send(pending: Pending) {
    // Sent now if live; otherwise it waits in `pending` and goes out after the next resume.
    this.frame({ type: 'message.send', id: pending.client_id, data: {
      conversation_id: pending.conversation_id, client_id: pending.client_id, kind: pending.kind, body: pending.body,
    } });
  }

  private connect() {
    if (!this.running || this.ws) return;
    if (!navigator.onLine) { this.offline(); return; }
    const token = getToken();
    if (!token) return;
    this.handlers.connection('connecting');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/api/v1/ws?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    this.live = false;
    ws.onmessage = (event) => { if (this.ws === ws) this.receive(JSON.parse(event.data)); };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.live = false;
      this.offline();
      if (!this.running) return;
      // The session was ended (logout elsewhere, a password change): sign in again
      // rather than reconnect with a token that no longer works.
      if (event.code === SESSION_ENDED_CLOSE_CODE) { this.running = false; onUnauthenticated(); return; }
      const delay = Math.min(5000, 400 * 2 ** this.attempt++);
      this.timer = window.setTimeout(() => this.connect(), delay);
    };
    clearInterval(this.pingTimer);
    this.pingTimer = window.setInterval(() => this.heartbeat(ws), 10000);
  }

  private heartbeat(ws: WebSocket) {
    if (this.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
    if (this.pongDeadline && Date.now() > this.pongDeadline) { ws.close(); return; }
    if (!this.pongDeadline) this.pongDeadline = Date.now() + 8000;
    ws.send(JSON.stringify({ type: 'ping' }));
  }

  private offline() {
    this.handlers.connection('offline');
  }

  private receive(frame: { type: string; id?: string; cursor?: string; data: any }) {
    switch (frame.type) {
      case 'hello': {
        const cursor = this.cursor ?? frame.data.cursor;
        this.ws?.send(JSON.stringify({ type: 'resume', id: 'resume', data: { cursor } }));
        if (!this.cursor) this.saveCursor(cursor);
        return;
      }
      case 'resumed':
        this.becameLive();
        return;
      case 'pong':
        this.pongDeadline = 0;
        return;
      case 'resync':
        // Events after our cursor were pruned: reload the state, then follow from here.
        this.saveCursor(frame.data.cursor);
        this.handlers.reload();
        return;
      case 'ack':
        this.handlers.ack(frame.data);
        return;
      case 'error':
        if (frame.id === 'resume') {
          // The server does not know our cursor (a reset database): start over from now.
          this.cursor = null;
          sessionStorage.removeItem(CURSOR_KEY);
          this.first = true;
          this.ws?.close();
          return;
        }
        if (frame.id) this.handlers.sendFailed(frame.id, frame.data);
        return;
      case 'driver.location':
      case 'typing':
        // Ephemeral (no cursor): applied as they come, never replayed.
        this.handlers.ephemeral(frame.type, frame.data);
        return;
    }
    // A live room's frames (`live.chat`, `live.stats`, …) come only while it is joined,
    // without a cursor: ephemeral too, never replayed.
    if (!frame.cursor && frame.type.startsWith('live.')) {
      this.handlers.ephemeral(frame.type, frame.data);
      return;
    }
    if (frame.cursor) {
      this.handlers.event(frame.type, frame.data);
      this.saveCursor(frame.cursor);
    }
  }

  private saveCursor(cursor: string) {
    this.cursor = cursor;
    sessionStorage.setItem(CURSOR_KEY, cursor);
  }

  private becameLive() {
    this.live = true;
    this.attempt = 0;
    this.handlers.connection('online');
    if (this.first) {
      // A fresh start reads the current state over HTTP; later reconnects rely on resume.
      this.first = false;
      this.handlers.reload();
    }
    // Whatever was written while offline goes out now, with the same client_id.
    for (const pending of this.handlers.pendingSends()) if (pending.status === 'sending') this.send(pending);
  }
}
