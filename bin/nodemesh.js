#!/usr/bin/env node
// Entry point of the `nodemesh` command: runs the compiled CLI (built by `npm ci` / `npm run build`).
import '../dist/cli/main.js';
