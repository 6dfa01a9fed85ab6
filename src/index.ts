/** Public API of node-red-contrib-coolkit for use outside Node-RED (tests, tools, the benchmark). */
export * as protocol from './protocol';
export * as cloud from './cloud';
export { CoolkitCloud } from './cloud/server';
export { CoolkitError, ErrorCode } from './protocol/errors';
export * as hub from './hub';
export * as sim from './sim';
