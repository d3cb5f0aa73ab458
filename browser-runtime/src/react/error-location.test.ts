import { describe, expect, it } from 'vitest';
import { parseErrorLocation } from './error-location.ts';

describe('parseErrorLocation', () => {
  it.each([
    [
      'esbuild',
      'src/App.jsx:3:7: ERROR: Unexpected "}"',
      { file: 'src/App.jsx', line: 3, column: 7, message: 'Unexpected "}"' },
    ],
    [
      'esbuild inside a Vite plugin message, sandbox path',
      '[plugin:vite:esbuild] Transform failed with 1 error:\n/app/src/main.ts:10:2: ERROR: Expected ";" but found "x"',
      { file: 'src/main.ts', line: 10, column: 2, message: 'Expected ";" but found "x"' },
    ],
    [
      'Babel (Vite React plugin)',
      '[plugin:vite:react-babel] /app/src/App.jsx: Unexpected token (4:2)',
      { file: 'src/App.jsx', line: 4, column: 2, message: 'Unexpected token' },
    ],
    [
      'a V8 stack line',
      "TypeError: Cannot read properties of undefined (reading 'x')\n    at App (src/App.tsx:12:5)",
      {
        file: 'src/App.tsx',
        line: 12,
        column: 5,
        message: "TypeError: Cannot read properties of undefined (reading 'x')",
      },
    ],
    [
      'Vite overlay text',
      'Failed to resolve import "./nope"\nfile: /app/src/main.js:1:7',
      { file: 'src/main.js', line: 1, column: 7, message: 'Failed to resolve import "./nope"' },
    ],
  ])('%s', (_, text, want) => {
    expect(parseErrorLocation(text)).toEqual(want);
  });

  it('a message without a location keeps its first line and no file', () => {
    expect(parseErrorLocation('\nnpm ERR! code ERESOLVE\nmore')).toEqual({
      message: 'npm ERR! code ERESOLVE',
    });
    expect(parseErrorLocation('')).toEqual({ message: '' });
  });
});
