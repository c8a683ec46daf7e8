export * from './keys.js';
export * from './key-source.js';
export * from './sign.js';
export * from './verify.js';
export * from './verify-chunk-index.js';
