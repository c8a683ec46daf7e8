export * from './reason-codes.js';
export * from './version.js';
export * from './platform.js';
export * from './canonical-json.js';
export * from './manifest.js';
export * from './messages.js';
export * from './chunk-index.js';
