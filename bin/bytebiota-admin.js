#!/usr/bin/env node
// Compiled entry point; `npm run build` (run by `npm ci` through `prepare`) writes dist/.
import '../dist/admin/main.js';
