import { describe, expect, it } from 'vitest';
import { LogRing } from './log.ts';

describe('LogRing', () => {
  it('keeps the last lines without colour codes', () => {
    const ring = new LogRing(2);
    ring.push('one\n\u001b[32mtwo\u001b[39m\nthree\n');
    expect(ring.tail(5)).toEqual(['two', 'three']);
  });

  it('takes an Error (as Vite hands its logger one) as its stack, and other values as strings', () => {
    const ring = new LogRing();
    ring.push(new Error('watcher failed'));
    ring.push(42);
    const lines = ring.tail(50);
    expect(lines[0]).toBe('Error: watcher failed');
    expect(lines.some((l) => l.includes('log.test.ts'))).toBe(true);
    expect(lines.at(-1)).toBe('42');
  });

  it('lastLines: the last lines, or, when they end in a stack trace, the error before its frames', () => {
    const plain = new LogRing();
    plain.push('a\nb\nc\nd\ne\nf\n');
    expect(plain.lastLines(3)).toEqual(['d', 'e', 'f']);

    const crash = new LogRing();
    crash.push('server starting\nfile:///project/server.js:1\nconst http = require("node:http");\n');
    crash.push('ReferenceError: require is not defined in ES module scope, you can use import instead\n');
    crash.push(Array.from({ length: 8 }, (_, i) => `    at frame${i} (node:internal/x:${i}:1)`).join('\n'));
    crash.push('\nNode.js v20.20.2\n');
    expect(crash.lastLines()).toEqual([
      'server starting',
      'file:///project/server.js:1',
      'const http = require("node:http");',
      'ReferenceError: require is not defined in ES module scope, you can use import instead',
      '    at frame0 (node:internal/x:0:1)',
      '    at frame1 (node:internal/x:1:1)',
      '    at frame2 (node:internal/x:2:1)',
      '    … 5 more frames',
      'Node.js v20.20.2',
    ]);

    // A trace that ended long before the last lines is not what stopped the app.
    const later = new LogRing();
    later.push('Error: once\n    at a (x:1:1)\n1\n2\n3\n4\n5\n');
    expect(later.lastLines()).toEqual(['1', '2', '3', '4', '5']);
  });
});
