/**
 * The 'error' listener for a raw socket taken over from the HTTP server (an upgrade): destroy it.
 * One shared function (the emitter is `this`), not a closure per socket: a closure created next
 * to other closures that use the upgrade request would keep that request, its headers and raw
 * header strings (about 1 KB) alive for as long as the connection lasts.
 */
import type { Duplex } from 'node:stream';

export function destroyOnError(this: Duplex): void {
  this.destroy();
}
