export * from './server';
export * from './registry';
export * from './device-session';
export * from './router';
export * from './store';
export * from './tls';
export * from './options';
export * from './log';
