import { describe, expect, it } from 'vitest';
import { classify } from './classify.ts';

describe('closest warm template', () => {
  const pkg = (deps: Record<string, string>, dev: Record<string, string> = {}) =>
    JSON.stringify({ dependencies: deps, devDependencies: dev });
  it.each([
    [{ 'package.json': pkg({ vue: '^3' }, { vite: '^8' }), 'src/App.vue': '' }, 'vite-vue'],
    [{ 'package.json': pkg({ vue: '^3' }, { typescript: '~6' }), 'src/main.ts': '' }, 'vite-vue-ts'],
    [{ 'package.json': pkg({ react: '^19' }, { typescript: '~7' }), 'src/App.tsx': '' }, 'vite-react-ts'],
    [{ 'package.json': pkg({ react: '^19' }), 'src/App.jsx': '' }, 'vite-react'],
    [
      { 'package.json': pkg({}, { typescript: '~7', vite: '^8' }), 'src/main.ts': '', 'tsconfig.json': '{}' },
      'vite-vanilla-ts',
    ],
    [{ 'package.json': pkg({}, { vite: '^8' }), 'src/main.js': '' }, 'vite-vanilla'],
    [{ 'package.json': pkg({ express: '^5', ms: '2' }), 'server.js': '' }, 'express-pg'],
    // create-expo-app's blank-typescript: React and TypeScript too, but only Metro builds it.
    [
      {
        'package.json': pkg(
          { expo: '~57.0.26', react: '19.2.3', 'react-native': '0.86.3' },
          { typescript: '~6.0.3' },
        ),
        'App.tsx': '',
        'index.ts': '',
      },
      'expo',
    ],
    // Expo Router API routes pull in a server package; the app is still Expo's.
    [
      { 'package.json': pkg({ expo: '~57.0.26', 'expo-router': '~57', express: '^5' }), 'app/index.tsx': '' },
      'expo',
    ],
  ] as const)('%j → %s', (files, template) => {
    expect(classify(files as Record<string, string>).template).toBe(template);
  });
});
