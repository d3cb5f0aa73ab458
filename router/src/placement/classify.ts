import type { ProjectFiles, TemplateName } from '@preview/tiers';

export interface Classification {
  /** Static/front-end app: a bundler or WebContainer can run it entirely in the browser. */
  frontendOnly: boolean;
  /** Has a server side (Node server, SSR framework). */
  fullStack: boolean;
  needsDatabase: boolean;
  /** Dependencies with native addons, which WebContainers cannot run. */
  nativeDeps: string[];
  template: TemplateName;
}

/** Packages that ship native addons (or native binaries) WebContainers cannot load. */
export const NATIVE_PACKAGES: readonly string[] = [
  'sharp',
  'bcrypt',
  'better-sqlite3',
  'sqlite3',
  'canvas',
  'argon2',
  'node-sass',
  'bufferutil',
  'utf-8-validate',
  'cpu-features',
  'ssh2',
  're2',
  'zeromq',
  'leveldown',
  'grpc',
  'node-pty',
  'usb',
  'serialport',
  'isolated-vm',
  'deasync',
  'fsevents',
  'msgpackr-extract',
  'libxmljs',
  'puppeteer',
];

const SERVER_PACKAGES = [
  'express',
  'fastify',
  'koa',
  'hono',
  '@hono/node-server',
  '@nestjs/core',
  'restify',
  'hapi',
  '@hapi/hapi',
  'ws',
  'socket.io',
];
const SSR_PACKAGES = ['next', '@remix-run/node', '@sveltejs/kit', 'nuxt', 'astro'];
const DB_PACKAGES = [
  'pg',
  'postgres',
  'pg-promise',
  '@prisma/client',
  'prisma',
  'knex',
  'typeorm',
  'sequelize',
  'kysely',
  'drizzle-orm',
  '@neondatabase/serverless',
  'slonik',
];
const SERVER_ENTRY = /^(server|api|backend)(\/.*)?\.(m?[jt]s|cjs)$|^(server|api|backend)\//;

function text(f: ProjectFiles[string] | undefined): string | undefined {
  if (f === undefined) return undefined;
  if (typeof f === 'string') return f;
  return f.encoding === 'base64' ? Buffer.from(f.content, 'base64').toString('utf8') : f.content;
}

function readPackageJson(files: ProjectFiles): { deps: Set<string>; scripts: Record<string, string> } {
  const raw = text(files['package.json']);
  const deps = new Set<string>();
  let scripts: Record<string, string> = {};
  if (raw) {
    try {
      const pkg = JSON.parse(raw) as Record<string, unknown>;
      for (const field of ['dependencies', 'devDependencies', 'optionalDependencies', 'peerDependencies']) {
        const d = pkg[field];
        if (d && typeof d === 'object') for (const name of Object.keys(d)) deps.add(name);
      }
      if (pkg['scripts'] && typeof pkg['scripts'] === 'object')
        scripts = pkg['scripts'] as Record<string, string>;
    } catch {
      // An unparsable package.json classifies as if it had no dependencies; the sandbox reports the error.
    }
  }
  return { deps, scripts };
}

/**
 * Classifies a project from its files alone (pure: no I/O).
 *
 * @example
 * classify({ 'package.json': '{"dependencies":{"express":"^5","pg":"^8"}}', 'server.js': '...' })
 * // { frontendOnly: false, fullStack: true, needsDatabase: true, nativeDeps: [], template: 'express-pg' }
 */
export function classify(files: ProjectFiles): Classification {
  const { deps, scripts } = readPackageJson(files);
  const paths = Object.keys(files);
  const nativeDeps = [...deps].filter((d) => NATIVE_PACKAGES.includes(d)).sort();
  if (paths.some((p) => p === 'binding.gyp' || p.endsWith('/binding.gyp'))) nativeDeps.push('(binding.gyp)');

  const ssr = SSR_PACKAGES.some((p) => deps.has(p));
  const serverDeps = SERVER_PACKAGES.some((p) => deps.has(p));
  const scriptRunsNode = Object.values(scripts).some((s) =>
    /\bnode\s+(--watch\s+)?\S+\.(m?js|cjs|ts)\b/.test(s),
  );
  const serverEntry = paths.some((p) => SERVER_ENTRY.test(p));
  const fullStack = ssr || serverDeps || scriptRunsNode || serverEntry;

  const sourceMentionsDb = paths.some((p) => {
    if (!/\.(m?[jt]sx?|cjs)$/.test(p) || p.includes('node_modules/')) return false;
    return /process\.env\.DATABASE_URL|process\.env\[['"]DATABASE_URL['"]\]/.test(text(files[p]) ?? '');
  });
  const needsDatabase = DB_PACKAGES.some((p) => deps.has(p)) || sourceMentionsDb;

  const template = closestTemplate({ deps, paths, fullStack });

  return { frontendOnly: !fullStack, fullStack, needsDatabase, nativeDeps, template };
}

/**
 * The warm template closest to a project, so that a claim installs as little as possible: the
 * framework from its dependencies and files (Expo, Next, a Node server, Vue, React, plain Vite), and
 * the TypeScript variant when the project is written in TypeScript (create-vite's default for each).
 * A project that depends on `expo` is a React Native app whatever else it holds (Expo Router's API
 * routes included): only Metro builds it.
 */
export function closestTemplate(p: { deps: Set<string>; paths: string[]; fullStack: boolean }): TemplateName {
  if (p.deps.has('expo')) return 'expo';
  if (p.deps.has('next')) return 'next';
  if (p.fullStack) return 'express-pg';
  const ts =
    p.deps.has('typescript') ||
    p.paths.some(
      (f) => /^tsconfig(\.[\w-]+)?\.json$/.test(f) || (/\.(ts|tsx|mts)$/.test(f) && !f.endsWith('.d.ts')),
    );
  if (p.deps.has('vue') || p.paths.some((f) => f.endsWith('.vue'))) return ts ? 'vite-vue-ts' : 'vite-vue';
  if (p.deps.has('react') || p.paths.some((f) => /\.(jsx|tsx)$/.test(f)))
    return ts ? 'vite-react-ts' : 'vite-react';
  return ts ? 'vite-vanilla-ts' : 'vite-vanilla';
}
