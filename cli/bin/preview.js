#!/usr/bin/env node
// The `preview` command (root package.json "bin"): the TypeScript sources run through tsx, like `npm start`.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
