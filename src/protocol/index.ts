export * from './types';
export * from './errors';
export * from './schemas';
export * from './builders';
export * from './state';
export * from './commands';
export * from './capabilities';
export * from './normalise';
