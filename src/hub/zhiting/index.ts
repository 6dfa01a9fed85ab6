export * from './json';
export * from './model';
export * from './sonoff';
export * from './virtual';
export * from './firmware';
export * from './errors';
export * from './api';
