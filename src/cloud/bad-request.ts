/**
 * The answer to a request Node's HTTP parser rejected (`clientError`): `400 Bad Request`, then
 * the connection is closed. `end()` lets the answer go out first; a peer that never reads it is
 * cut off shortly after, so a broken client cannot hold the socket.
 */
import type { Duplex } from 'node:stream';

const BAD_REQUEST = 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nbad request\n';
const LINGER_MS = 2000;

export function answerBadRequest(socket: Duplex): void {
  if (!socket.writable || socket.destroyed) {
    socket.destroy();
    return;
  }
  socket.end(BAD_REQUEST);
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref?.();
  socket.once('close', () => clearTimeout(timer));
}
