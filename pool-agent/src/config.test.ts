import { createHash } from 'node:crypto';
import { InvalidInputError } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.ts';
import { diffOps } from './daemon-client.ts';
import { rewriteDatabaseUrl } from './db-forwarder.ts';

describe('loadConfig', () => {
  it('has small warm pools by default and parses sizes and targets', () => {
    const c = loadConfig({});
    expect(c.WARM_POOL).toEqual({
      'vite-react': 2,
      'vite-vanilla': 1,
      'vite-react-ts': 1,
      'vite-vue': 1,
      'vite-vue-ts': 1,
      'vite-vanilla-ts': 1,
    });
    expect(c.AGENT_HOST).toBe('127.0.0.1');
    const d = loadConfig({
      WARM_POOL: 'next=3, express-pg=0',
      PREVIEW_DATABASE_TARGET: '127.0.0.1:5432',
      NODE_SLOTS: '40',
    });
    expect(d.WARM_POOL).toEqual({ next: 3, 'express-pg': 0 });
    expect(d.PREVIEW_DATABASE_TARGET).toEqual({ host: '127.0.0.1', port: 5432 });
    expect(d.NODE_SLOTS).toBe(40);
    expect(c.PREVIEW_LABELS).toEqual({});
    expect(loadConfig({ PREVIEW_LABELS: 'preview.test=1, team=web,empty=' }).PREVIEW_LABELS).toEqual({
      'preview.test': '1',
      team: 'web',
      empty: '',
    });
    expect(loadConfig({ PROCESS_TEMPLATES: 'vite-vue, next,vite-vue' }).PROCESS_TEMPLATES).toEqual([
      'vite-vue',
      'next',
    ]);
  });

  it('names the bad variable and the rule', () => {
    const bad: Array<[Record<string, string>, RegExp]> = [
      [{ WARM_POOL: 'cobol=2' }, /WARM_POOL: bad entry "cobol=2"/],
      [{ PREVIEW_UID: '0' }, /PREVIEW_UID: must not be 0/],
      [{ AGENT_TOKEN: 'short' }, /AGENT_TOKEN: must be at least 16/],
      [{ PREVIEW_DATABASE_TARGET: 'nope' }, /PREVIEW_DATABASE_TARGET: must be host:port/],
      [{ AGENT_RUNTIME: 'vm' }, /AGENT_RUNTIME/],
      [{ PROCESS_TEMPLATES: 'vite-react,cobol' }, /PROCESS_TEMPLATES: unknown template "cobol"/],
      [{ PREVIEW_LABELS: 'nokey' }, /PREVIEW_LABELS: bad entry "nokey".*rule label_format/],
      [{ PREVIEW_LABELS: 'Team=x' }, /PREVIEW_LABELS: bad entry "Team=x"/],
      [{ PREVIEW_LABELS: 'preview.node=x' }, /PREVIEW_LABELS: label "preview.node": set by the agent itself/],
      [{ PREVIEW_LABELS: 'a=1,a=2' }, /PREVIEW_LABELS: label "a": given twice/],
      [{ PROCESS_TEMPLATES: ' , ' }, /PROCESS_TEMPLATES: name at least one template/],
    ];
    for (const [env, msg] of bad) {
      expect(() => loadConfig(env)).toThrow(InvalidInputError);
      expect(() => loadConfig(env)).toThrow(msg);
    }
  });
});

describe('diffOps', () => {
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  it('puts what differs, skips what is equal, deletes template files the user lacks', () => {
    const manifest = { 'index.html': sha('<p>template</p>'), 'src/a.js': sha('a'), 'src/old.js': sha('old') };
    const batches = diffOps(manifest, {
      'index.html': '<p>user</p>',
      'src/a.js': 'a',
      'img.png': { content: Buffer.from([1, 2, 3]).toString('base64'), encoding: 'base64' },
    });
    expect(batches).toHaveLength(1);
    expect(batches[0]).toEqual([
      { op: 'put', path: 'index.html', content: '<p>user</p>', encoding: 'utf8' },
      { op: 'put', path: 'img.png', content: 'AQID', encoding: 'base64' },
      { op: 'delete', path: 'src/old.js' },
    ]);
    // A binary file equal to the template's is not sent again.
    expect(
      diffOps(
        {
          'img.png': createHash('sha256')
            .update(Buffer.from([1, 2, 3]))
            .digest('hex'),
        },
        { 'img.png': { content: 'AQID', encoding: 'base64' } },
      ),
    ).toEqual([]);
  });
});

describe('rewriteDatabaseUrl', () => {
  const target = { host: '127.0.0.1', port: 5432 };
  const via = { host: '172.20.0.1', port: 40000 };
  it('points a URL of the target at the forwarder and leaves others alone', () => {
    expect(rewriteDatabaseUrl('postgres://u:p@localhost:5432/db?sslmode=disable', target, via)).toBe(
      'postgres://u:p@172.20.0.1:40000/db?sslmode=disable',
    );
    expect(rewriteDatabaseUrl('postgres://u@127.0.0.1/db', target, via)).toBe(
      'postgres://u@172.20.0.1:40000/db',
    );
    expect(rewriteDatabaseUrl('postgres://u@db.example.com:5432/db', target, via)).toBe(
      'postgres://u@db.example.com:5432/db',
    );
    expect(rewriteDatabaseUrl('postgres://u@127.0.0.1:6543/db', target, via)).toBe(
      'postgres://u@127.0.0.1:6543/db',
    );
  });
});
