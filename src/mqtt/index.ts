export * from './topics';
export * from './placement';
export * from './discovery';
export * from './payloads';
export * from './backbone';
