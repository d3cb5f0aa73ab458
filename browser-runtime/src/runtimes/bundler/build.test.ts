import * as vue from '@vue/compiler-sfc';
import * as esbuild from 'esbuild';
import * as svelte from 'svelte/compiler';
import { describe, expect, it } from 'vitest';
import {
  BuildError,
  type EsbuildLike,
  findEntry,
  importMapResolves,
  ProjectBuilder,
  rewriteHtml,
} from './build.ts';

type Files = Map<string, string | Uint8Array>;
const M = '/__preview-bundler/p1/__m/';

/** esbuild, counting the entry points each run compiles. */
function counting(): EsbuildLike & { compiled: string[][]; transformed: string[] } {
  const compiled: string[][] = [];
  const transformed: string[] = [];
  return {
    compiled,
    transformed,
    build: (o) => {
      compiled.push((o.entryPoints as Array<{ in: string }>).map((e) => e.in));
      return esbuild.build(o);
    },
    transform: (input, o) => {
      transformed.push(o?.sourcefile ?? '');
      return esbuild.transform(input, o);
    },
  };
}
/** esbuild's build only (the slow path: every module through the plugin). */
const buildOnly: EsbuildLike = { build: (o) => esbuild.build(o) };
const code = (out: { modules: Array<[string, string]> }, path: string): string =>
  out.modules.find(([p]) => p === path)?.[1] ?? '';

/** The bundler's build step with native esbuild (the same API esbuild-wasm exposes in the worker). */
describe('bundler build: one module per file, as a dev server serves them', () => {
  const vendor = { react: '/vendor/react.js', 'react/jsx-runtime': '/vendor/jsx.js' };

  it('finds the entry from index.html, or a conventional one', () => {
    const html = '<body><script type="module" src="/src/main.tsx"></script></body>';
    expect(
      findEntry(
        new Map([
          ['index.html', html],
          ['src/main.tsx', ''],
        ]),
      ).entry,
    ).toBe('src/main.tsx');
    expect(findEntry(new Map([['src/main.js', '']])).entry).toBe('src/main.js');
    expect(() => findEntry(new Map([['index.html', html]]))).toThrow(BuildError);
  });

  it('compiles TSX, CSS as a style module, assets as URLs; vendor imports stay bare', async () => {
    const files: Files = new Map<string, string | Uint8Array>([
      [
        'index.html',
        '<html><head></head><body><img src="/logo.svg"><script type="module" src="/src/main.tsx"></script></body></html>',
      ],
      [
        'src/main.tsx',
        "import './a.css';\nimport { App } from './App';\nimport logo from './img.png';\nconst x: number = 1;\nexport default <App n={x} src={logo} />;\n",
      ],
      ['src/App.tsx', 'export const App = (p: { n: number }) => <b>{p.n}</b>;\n'],
      ['src/a.css', "@import './b.css';\nb { color: red; background: url(./img.png) }\n"],
      ['src/b.css', 'i { color: blue }\n'],
      ['src/img.png', new Uint8Array([1, 2, 3])],
      ['public/logo.svg', '<svg/>'],
    ]);
    const out = await new ProjectBuilder(esbuild, { previewId: 'p1' }).build(files, vendor, 1);
    expect(out.modules.map(([p]) => p).sort()).toEqual([
      'src/App.tsx',
      'src/a.css',
      'src/img.png',
      'src/main.tsx',
    ]);
    const main = code(out, 'src/main.tsx');
    expect(main).toMatch(/from "react\/jsx-runtime"/);
    expect(main).toContain(`from "${M}src/App.tsx"`);
    expect(main).toContain(`import "${M}src/a.css"`);
    expect(main).not.toMatch(/: number/);
    // @import inlined, url() pointing at the served asset.
    expect(code(out, 'src/a.css')).toMatch(
      /__previewBundler\?\.style\("src\/a\.css", ".*color: blue.*color: red/s,
    );
    expect(code(out, 'src/a.css')).toContain('url(/__preview-bundler/p1/src/img.png)');
    expect(code(out, 'src/img.png')).toMatch(
      /_default = "\/__preview-bundler\/p1\/src\/img\.png";\nexport \{\n {2}img_default as default/,
    );
    expect(new Map(out.assets).get('logo.svg')).toBe('<svg/>');
    expect(out.html).toMatch(/<script type="importmap">.*"react\/jsx-runtime"/);
    expect(out.html).toContain('src="./logo.svg"');
    expect(out.html).toContain(`<script type="module" src="${M}src/main.tsx"></script>`);
    expect(out.html).toContain(`<link rel="modulepreload" href="${M}src/App.tsx">`);
    expect(out.html.indexOf('importmap')).toBeLessThan(out.html.indexOf(`${M}src/main.tsx`));
    expect(out.update).toBe('reload');
  });

  it('an edit compiles and reports only the module it changed; the entry or the page reloads', async () => {
    const es = counting();
    const b = new ProjectBuilder(es, { previewId: 'p1' });
    const files: Files = new Map<string, string | Uint8Array>([
      ['src/main.js', "import { a } from './a.js';\nimport { b } from './b.js';\nconsole.log(a, b);\n"],
      ['src/a.js', 'export const a = 1;\n'],
      ['src/b.js', 'export const b = 2;\n'],
      ['src/logo.png', new Uint8Array([1, 2, 3])],
    ]);
    await b.build(files, vendor, 1);
    // JS modules go through esbuild's transform (the fast path); build is not needed.
    expect(es.transformed).toEqual(['src/main.js', 'src/a.js', 'src/b.js']);
    expect(es.compiled).toEqual([]);
    // The same bytes in a new array (each build's files are a structured clone) are no change.
    const same = await b.build(new Map(files).set('src/logo.png', new Uint8Array([1, 2, 3])), vendor, 2);
    expect(same).toMatchObject({ modules: [], assets: [], update: 'none' });
    expect(es.transformed).toHaveLength(3);
    const edited = await b.build(new Map(files).set('src/a.js', 'export const a = 42;\n'), vendor, 3);
    expect(es.transformed.slice(3)).toEqual(['src/a.js']);
    expect(es.compiled).toEqual([]);
    expect(edited.update).toBe('hot');
    expect(edited.modules.map(([p]) => p)).toEqual(['src/a.js']);
    expect(code(edited, 'src/a.js')).toContain('42');
    const entry = await b.build(
      new Map(files).set('src/a.js', 'export const a = 42;\n').set('src/main.js', "import './a.js';\n"),
      vendor,
      4,
    );
    expect(entry.update).toBe('reload');
    // A module that comes into the graph is compiled then.
    const added = await b.build(
      new Map(files).set('src/main.js', "import './c.js';\n").set('src/c.js', 'export {};\n'),
      vendor,
      5,
    );
    expect(added.modules.map(([p]) => p).sort()).toEqual(['src/c.js', 'src/main.js']);
  });

  it('a store keeps compiled modules for another builder (a reload, another preview); import map key order is no change', async () => {
    const kept = new Map<string, { code: string; deps: string[] }>();
    const store = {
      get: async (k: string) => kept.get(k),
      put: async (k: string, v: { code: string; deps: string[] }) => void kept.set(k, v),
    };
    const files: Files = new Map([
      ['src/main.jsx', "import { App } from './App.jsx';\nconsole.log(<App />);\n"],
      ['src/App.jsx', 'export const App = () => <p>{"/__preview-bundler/x/"}</p>;\n'],
    ]);
    const first = await new ProjectBuilder(esbuild, { previewId: 'one', store }).build(files, vendor);
    expect(first.compiled).toBe(2);
    await new Promise((r) => setTimeout(r, 50)); // the store's puts are not awaited by build
    const reordered = { 'react/jsx-runtime': vendor['react/jsx-runtime'], react: vendor.react };
    const es = counting();
    const second = await new ProjectBuilder(es, { previewId: 'two', store }).build(files, reordered);
    expect(second.compiled).toBe(0);
    expect(es.transformed).toEqual([]);
    // The module URLs are the new preview's.
    expect(code(second, 'src/main.jsx')).toContain('from "/__preview-bundler/two/__m/src/App.jsx"');
    expect(code(second, 'src/main.jsx')).not.toContain('/__preview-bundler/one/');
  });

  it('names missing files, packages not in the import map and syntax errors with file, line and column', async () => {
    const b = new ProjectBuilder(esbuild, { previewId: 'p1' });
    const files: Files = new Map([
      ['src/main.js', "import './ok.js';\nimport './missing.js';\nimport 'left-pad';\n"],
      ['src/ok.js', ''],
    ]);
    const err = await b.build(files, vendor).catch((e) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect(err.errors.join('\n')).toMatch(/^src\/main\.js:2:7: cannot find "\.\/missing\.js"/m);
    expect(err.problems).toContainEqual({
      file: 'src/main.js',
      line: 3,
      column: 7,
      lineText: "import 'left-pad';",
      message: expect.stringMatching(/package "left-pad" is not in the preview.s import map/),
    });
    const syntax = await b
      .build(
        new Map([
          ['src/main.js', "import './ok.js';\n"],
          ['src/ok.js', 'export const x = (1;\n'],
        ]),
        vendor,
      )
      .catch((e) => e);
    expect(syntax.problems[0]).toMatchObject({
      file: 'src/ok.js',
      line: 1,
      column: 19,
      message: 'Expected ")" but found ";"',
    });
  });

  it('resolves bare imports as an import map does: exact keys and `pkg/` prefixes (the router map)', async () => {
    const map = {
      vue: '/__pkg/vue@3.5.13',
      'vue/': '/__pkg/vue@3.5.13/',
      '@scope/pkg': '/__pkg/@scope/pkg@1.0.0',
      '@scope/pkg/': '/__pkg/@scope/pkg@1.0.0/',
    };
    expect(importMapResolves(map, 'vue')).toBe(true);
    expect(importMapResolves(map, 'vue/dist/vue.esm-bundler.js')).toBe(true);
    expect(importMapResolves(map, '@scope/pkg/sub/deep')).toBe(true);
    expect(importMapResolves(map, '@scope/other')).toBe(false);
    expect(importMapResolves(map, 'vuex')).toBe(false);
    const files: Files = new Map([
      [
        'src/main.js',
        "import { ref } from 'vue';\nimport sub from '@scope/pkg/sub';\nconsole.log(ref, sub);\n",
      ],
    ]);
    const out = await new ProjectBuilder(esbuild, { previewId: 'p1' }).build(files, map);
    expect(code(out, 'src/main.js')).toMatch(/from "vue"/);
    expect(code(out, 'src/main.js')).toMatch(/from "@scope\/pkg\/sub"/);
    expect(out.html).toContain('"vue/":"/__pkg/vue@3.5.13/"');
    const err = await new ProjectBuilder(esbuild, { previewId: 'p1' })
      .build(new Map([['src/main.js', "import 'date-fns';"]]), map)
      .catch((e) => e);
    expect(err.errors.join('\n')).toMatch(
      /"date-fns" is not in the preview.s import map \(it has vue, @scope\/pkg\)/,
    );
  });

  for (const [how, es] of [
    ['transform + es-module-lexer', esbuild],
    ['build (export clause)', buildOnly],
  ] as const)
    it(`React (${how}): component modules register with React Refresh, the page loads its runtime first`, async () => {
      const files: Files = new Map([
        [
          'index.html',
          '<body><div id="root"></div><script type="module" src="/src/main.tsx"></script></body>',
        ],
        [
          'src/main.tsx',
          "import App from './App';\nimport { helper } from './util';\nconsole.log(<App />, helper);\n",
        ],
        [
          'src/App.tsx',
          "import { useState } from 'react';\nexport default function App() {\n  const [n] = useState(0);\n  return <p>{n}</p>;\n}\nexport function Other() { return null; }\n",
        ],
        ['src/util.ts', 'export const helper = 1;\n'],
      ]);
      const out = await new ProjectBuilder(esbuild, {
        previewId: 'p1',
        refreshUrl: 'http://h/vendor/rr.js',
      }).build(files, vendor);
      const app = code(out, 'src/App.tsx');
      expect(app).toMatch(
        /__previewBundler\?\.refresh\("src\/App\.tsx", \{[^}]*\}, "useState\(", false\);\n$/,
      );
      expect(app).toContain('"default": App');
      expect(app).toContain('"Other": Other');
      expect(code(out, 'src/main.tsx')).toContain(`from "${M}src/App.tsx"`);
      expect(code(out, 'src/main.tsx')).toContain(`from "${M}src/util.ts"`);
      // `export default <expression>` gets a binding to register.
      const anon = await new ProjectBuilder(es, { previewId: 'p1', refreshUrl: 'http://h/rr.js' }).build(
        new Map([['src/main.jsx', 'export default () => <i />;\n']]),
        vendor,
      );
      const main = code(anon, 'src/main.jsx');
      expect(main).toMatch(/refresh\("src\/main\.jsx", \{"default": [\w$]+\}/);
      expect(main).toMatch(/export\s*(default|\{[^}]*as default)/);
      expect(code(out, 'src/util.ts')).toMatch(/refresh\("src\/util\.ts", \{"helper": helper\}, "", false\)/);
      expect(out.html).toMatch(
        /import RR from "http:\/\/h\/vendor\/rr\.js";RR\.injectIntoGlobalHook\(window\)/,
      );
      expect(out.html.indexOf('injectIntoGlobalHook')).toBeLessThan(out.html.indexOf(`${M}src/main.tsx`));
      // Without React in the import map there is nothing to register.
      const plain = await new ProjectBuilder(esbuild, {
        previewId: 'p1',
        refreshUrl: 'http://h/rr.js',
      }).build(new Map([['src/main.js', 'export const x = 1;']]), {});
      expect(code(plain, 'src/main.js')).not.toContain('refresh(');
      expect(plain.html).not.toContain('injectIntoGlobalHook');
    });

  it('compiles Vue single-file components: script setup (TS), template assets, scoped styles', async () => {
    const files: Files = new Map<string, string | Uint8Array>([
      [
        'src/main.ts',
        "import { createApp } from 'vue';\nimport App from './App.vue';\ncreateApp(App).mount('#app');\n",
      ],
      [
        'src/App.vue',
        '<script setup lang="ts">\nimport { ref } from \'vue\'\nimport Child from \'./Child.vue\'\nconst n = ref<number>(1)\n</script>\n<template><img src="./logo.svg"><Child :n="n" /></template>\n<style scoped>img { width: 3px }</style>\n',
      ],
      [
        'src/Child.vue',
        '<script lang="ts">\nexport default { props: { n: Number } }\n</script>\n<template><b>n is {{ n }}</b></template>\n',
      ],
      ['src/logo.svg', '<svg/>'],
    ]);
    const vendorVue = { vue: '/__pkg/vue@3.5.0' };
    const out = await new ProjectBuilder(esbuild, { previewId: 'p1', vue }).build(files, vendorVue);
    const app = code(out, 'src/App.vue');
    expect(app).toMatch(/from "vue"/);
    expect(app).not.toMatch(/ref<number>/);
    expect(app).toContain(`from "${M}src/logo.svg"`);
    expect(app).toMatch(/__scopeId = "data-v-[0-9a-f]{8}"/);
    expect(app).toMatch(/style\("src\/App\.vue", "img\[data-v-[0-9a-f]{8}\]/);
    expect(code(out, 'src/Child.vue')).toContain('n is ');
    const broken = new Map(files).set('src/Child.vue', '<template><b>{{ n </b></template>');
    const err = await new ProjectBuilder(esbuild, { previewId: 'p1', vue })
      .build(broken, vendorVue)
      .catch((e) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect(err.problems[0].file).toBe('src/Child.vue');
    const noCompiler = await new ProjectBuilder(esbuild, { previewId: 'p1' })
      .build(files, vendorVue)
      .catch((e) => e);
    expect(noCompiler.errors.join('\n')).toMatch(/src\/App\.vue: no Vue compiler/);
  });

  it('compiles Svelte components (TS script, styles injected); a compile error names file, line and column', async () => {
    const files: Files = new Map([
      [
        'src/main.ts',
        "import { mount } from 'svelte';\nimport App from './App.svelte';\nmount(App, { target: document.body });\n",
      ],
      [
        'src/App.svelte',
        '<script lang="ts">\n  let count: number = $state(0);\n</script>\n<button onclick={() => count++}>Count is {count}</button>\n<style>button { color: red }</style>\n',
      ],
    ]);
    const map = { svelte: '/__pkg/svelte@5.0.0', 'svelte/': '/__pkg/svelte@5.0.0/' };
    const out = await new ProjectBuilder(esbuild, { previewId: 'p1', svelte: async () => svelte }).build(
      files,
      map,
    );
    const app = code(out, 'src/App.svelte');
    expect(app).toMatch(/from "svelte\/internal\/client"/);
    expect(app).not.toContain(': number');
    expect(app).toContain('color: red');
    const err = await new ProjectBuilder(esbuild, { previewId: 'p1', svelte })
      .build(new Map(files).set('src/App.svelte', '<p>\n{#if x}\n</p>'), map)
      .catch((e) => e);
    expect(err.problems[0]).toMatchObject({ file: 'src/App.svelte', line: expect.any(Number) });
  });

  it('injects the import map and the frame client before the entry module', () => {
    const out = rewriteHtml('<html><head><title>t</title></head><body></body></html>', vendor, 'p', 3, {
      entry: 'src/main.js',
    });
    expect(out.indexOf('importmap')).toBeLessThan(out.indexOf('/__preview-bundler/p/__m/src/main.js'));
    expect(out).toContain('"channel":"preview-bundler:p","build":3');
  });
});
