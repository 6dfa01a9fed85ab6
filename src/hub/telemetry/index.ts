/** The telemetry and alerts WebSocket API (seed 003, Valtronics-style) for the local cloud. */
export * from './metrics';
export * from './filters';
export * from './schema';
export * from './jwt';
export * from './alerts';
export * from './devices';
export * from './fanout';
export * from './system';
export * from './service';
export * from './server';
