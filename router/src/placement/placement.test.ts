import { describe, expect, it } from 'vitest';
import { FIXTURES, loadFixture } from '../../test/fixtures.ts';
import { classify } from './classify.ts';
import { place } from './place.ts';

const all = ['browser', 'docker', 'fly'] as const;
const capable = { webcontainer: true, bundler: true };

describe('classify (fixture projects)', () => {
  it.each([
    [
      'vite-vanilla',
      {
        frontendOnly: true,
        fullStack: false,
        needsDatabase: false,
        nativeDeps: [],
        template: 'vite-vanilla',
      },
    ],
    [
      'react-app',
      { frontendOnly: true, fullStack: false, needsDatabase: false, nativeDeps: [], template: 'vite-react' },
    ],
    [
      'express-pg',
      { frontendOnly: false, fullStack: true, needsDatabase: true, nativeDeps: [], template: 'express-pg' },
    ],
    [
      'next-app',
      { frontendOnly: false, fullStack: true, needsDatabase: false, nativeDeps: [], template: 'next' },
    ],
    [
      'native-deps',
      {
        frontendOnly: true,
        fullStack: false,
        needsDatabase: false,
        nativeDeps: ['bcrypt', 'better-sqlite3', 'sharp'],
        template: 'vite-vanilla',
      },
    ],
  ] as const)('%s', (name, expected) => {
    expect(classify(loadFixture(name))).toEqual(expected);
  });

  it('detects a database from DATABASE_URL in source without a driver dependency', () => {
    const c = classify({
      'package.json': '{"dependencies":{"express":"5"}}',
      'src/db.js': 'connect(process.env.DATABASE_URL)',
    });
    expect(c).toMatchObject({ needsDatabase: true, fullStack: true });
  });

  it('treats an unparsable package.json as no dependencies', () => {
    expect(classify({ 'package.json': '{oops', 'index.html': '<p>' })).toMatchObject({
      frontendOnly: true,
      template: 'vite-vanilla',
    });
  });
});

describe('place (fixture projects, with reasons)', () => {
  const capacity = { docker: { available: 5, total: 10 }, fly: { available: 100, total: 100 } };

  it('frontend-only apps go to the browser first, servers after', () => {
    for (const name of ['vite-vanilla', 'react-app'] as const) {
      const d = place(classify(loadFixture(name)), capable, capacity, { enabled: all });
      expect(d.candidates).toEqual(['browser', 'docker', 'fly']);
      expect(d.reasons).toEqual([]);
    }
  });

  it('full-stack and database apps skip the browser, saying why', () => {
    const d = place(classify(loadFixture('express-pg')), capable, capacity, { enabled: all });
    expect(d.candidates).toEqual(['docker', 'fly']);
    expect(d.reasons).toEqual([{ tier: 'browser', outcome: 'skipped', reason: 'needs a database' }]);
    const next = place(classify(loadFixture('next-app')), capable, capacity, { enabled: all });
    expect(next.candidates).toEqual(['docker', 'fly']);
    expect(next.reasons[0]?.reason).toMatch(/full-stack/);
  });

  it('native dependencies WebContainers cannot run keep a frontend app off the browser tier', () => {
    const d = place(classify(loadFixture('native-deps')), capable, capacity, { enabled: all });
    expect(d.candidates).toEqual(['docker', 'fly']);
    expect(d.reasons[0]).toEqual({
      tier: 'browser',
      outcome: 'skipped',
      reason: 'native dependencies WebContainers cannot run: bcrypt, better-sqlite3, sharp',
    });
  });

  it('an Expo app takes the browser tier only with WebContainers (the bundler runtime has no Metro)', () => {
    const expo = classify({
      'package.json': JSON.stringify({ dependencies: { expo: '~57.0.26', 'react-native': '0.86.3' } }),
      'App.tsx': '',
    });
    expect(expo.template).toBe('expo');
    expect(place(expo, capable, capacity, { enabled: all }).candidates).toEqual(['browser', 'docker', 'fly']);
    const d = place(expo, { webcontainer: false, bundler: true }, capacity, { enabled: all });
    expect(d.candidates).toEqual(['docker', 'fly']);
    expect(d.reasons).toEqual([
      { tier: 'browser', outcome: 'skipped', reason: 'the bundler runtime cannot run Expo (Metro)' },
    ]);
  });

  it('a full docker pool overflows to fly; unconfigured tiers are named', () => {
    const d = place(
      classify(loadFixture('express-pg')),
      capable,
      { docker: { available: 0, total: 10 } },
      { enabled: all },
    );
    expect(d.candidates).toEqual(['fly']);
    expect(d.reasons).toContainEqual({
      tier: 'docker',
      outcome: 'skipped',
      reason: 'docker tier is full (10/10 in use)',
    });
    // No node at all is not "full (0/0)": the reason says there is none.
    const none = place(
      classify(loadFixture('express-pg')),
      capable,
      { docker: { available: 0, total: 0 } },
      { enabled: all },
    );
    expect(none.reasons).toContainEqual({
      tier: 'docker',
      outcome: 'skipped',
      reason: 'docker tier has no live node (none registered, or still starting)',
    });
    const noFly = place(
      classify(loadFixture('vite-vanilla')),
      capable,
      {},
      { enabled: ['browser', 'docker'] },
    );
    expect(noFly.reasons).toContainEqual({
      tier: 'fly',
      outcome: 'skipped',
      reason: 'fly tier is not configured',
    });
  });

  it('a move to one tier skips the others saying the tier was asked for, not that they are missing', () => {
    const moved = place(classify(loadFixture('vite-vanilla')), capable, {}, { enabled: all, only: 'docker' });
    expect(moved.candidates).toEqual(['docker']);
    expect(moved.reasons).toEqual([
      { tier: 'browser', outcome: 'skipped', reason: 'the docker tier was asked for' },
      { tier: 'fly', outcome: 'skipped', reason: 'the docker tier was asked for' },
    ]);
    // Asked for a tier this deployment lacks: nothing to try, and the reason says it is not configured.
    const none = place(
      classify(loadFixture('vite-vanilla')),
      capable,
      {},
      {
        enabled: ['browser', 'docker'],
        only: 'fly',
      },
    );
    expect(none.candidates).toEqual([]);
    expect(none.reasons).toContainEqual({
      tier: 'fly',
      outcome: 'skipped',
      reason: 'fly tier is not configured',
    });
  });

  it('client capabilities decide the browser tier', () => {
    const react = classify(loadFixture('react-app'));
    expect(place(react, { webcontainer: false, bundler: true }, {}, { enabled: all }).candidates[0]).toBe(
      'browser',
    );
    const none = place(react, { webcontainer: false, bundler: false }, {}, { enabled: all });
    expect(none.candidates).toEqual(['docker', 'fly']);
    expect(none.reasons[0]?.reason).toMatch(/neither WebContainers nor the bundler/);
    expect(place(react, capable, {}, { enabled: all, serverOnly: true }).candidates).toEqual([
      'docker',
      'fly',
    ]);
  });

  it('every fixture gets at least one candidate when all tiers are up', () => {
    for (const f of FIXTURES)
      expect(
        place(classify(loadFixture(f)), capable, capacity, { enabled: all }).candidates.length,
      ).toBeGreaterThan(0);
  });
});
