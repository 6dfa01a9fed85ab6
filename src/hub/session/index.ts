/** The shared connection layer of the hub APIs (Zhiting today; telemetry/alerts next). */
export * from './types';
export * from './auth';
export * from './limits';
export * from './connection';
export * from './gateway';
export * from './serve';
