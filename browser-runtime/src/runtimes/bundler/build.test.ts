import * as vue from '@vue/compiler-sfc';
import * as esbuild from 'esbuild';
import { describe, expect, it } from 'vitest';
import { BuildError, buildProject, findEntry, importMapResolves, rewriteHtml } from './build.ts';

/** The bundler's build step with native esbuild (the same API esbuild-wasm exposes in the worker). */
describe('bundler build', () => {
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

  it('bundles TSX with CSS, keeps vendor imports external, and carries assets', async () => {
    const files = new Map<string, string | Uint8Array>([
      [
        'index.html',
        '<html><head></head><body><img src="/logo.svg"><script type="module" src="/src/main.tsx"></script></body></html>',
      ],
      [
        'src/main.tsx',
        "import './a.css';\nimport { App } from './App';\nconst x: number = 1;\nexport default <App n={x} />;\n",
      ],
      ['src/App.tsx', 'export const App = (p: { n: number }) => <b>{p.n}</b>;\n'],
      ['src/a.css', 'b { color: red }\n'],
      ['public/logo.svg', '<svg/>'],
    ]);
    const out = await buildProject(esbuild, files, { vendor, previewId: 'p1' });
    expect(out.js).toMatch(/from "react\/jsx-runtime"/);
    expect(out.js).not.toMatch(/: number/);
    expect(out.css).toMatch(/color: red/);
    expect(out.assets.get('logo.svg')).toBe('<svg/>');
    expect(out.html).toMatch(/<script type="importmap">.*"react\/jsx-runtime"/);
    expect(out.html).toContain('src="./logo.svg"');
    expect(out.html).not.toContain('/src/main.tsx');
  });

  it('names missing files and packages without an offline copy', async () => {
    const files = new Map<string, string | Uint8Array>([
      ['src/main.js', "import './missing.js';\nimport 'left-pad';\n"],
    ]);
    const err = await buildProject(esbuild, files, { vendor, previewId: 'p1' }).catch((e) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect(err.errors.join('\n')).toMatch(/cannot find "\.\/missing\.js"/);
    expect(err.errors.join('\n')).toMatch(/package "left-pad" is not in the preview.s import map/);
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
    const files = new Map<string, string | Uint8Array>([
      [
        'src/main.js',
        "import { ref } from 'vue';\nimport sub from '@scope/pkg/sub';\nconsole.log(ref, sub);\n",
      ],
    ]);
    const out = await buildProject(esbuild, files, { vendor: map, previewId: 'p1' });
    expect(out.js).toMatch(/from "vue"/);
    expect(out.js).toMatch(/from "@scope\/pkg\/sub"/);
    expect(out.html).toContain('"vue/":"/__pkg/vue@3.5.13/"');
    const err = await buildProject(esbuild, new Map([['src/main.js', "import 'date-fns';"]]), {
      vendor: map,
      previewId: 'p1',
    }).catch((e) => e);
    expect(err.errors.join('\n')).toMatch(
      /"date-fns" is not in the preview.s import map \(it has vue, @scope\/pkg\)/,
    );
  });

  it('compiles Vue single-file components: script setup (TS), template assets, scoped styles', async () => {
    const files = new Map<string, string | Uint8Array>([
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
    const out = await buildProject(esbuild, files, {
      vendor: { vue: '/__pkg/vue@3.5.0' },
      previewId: 'p1',
      vue,
    });
    expect(out.js).toMatch(/from "vue"/);
    expect(out.js).not.toMatch(/ref<number>/);
    expect(out.js).toContain('data:image/svg+xml');
    expect(out.js).toContain('n is ');
    expect(out.js).toMatch(/__scopeId = "data-v-[0-9a-f]{8}"/);
    expect(out.css).toMatch(/img\[data-v-[0-9a-f]{8}\]/);
    const broken = new Map(files).set('src/Child.vue', '<template><b>{{ n </b></template>');
    const err = await buildProject(esbuild, broken, {
      vendor: { vue: '/__pkg/vue@3.5.0' },
      previewId: 'p1',
      vue,
    }).catch((e) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect(err.errors.join('\n')).toMatch(/src\/Child\.vue/);
    const noCompiler = await buildProject(esbuild, files, {
      vendor: { vue: '/__pkg/vue@3.5.0' },
      previewId: 'p1',
    }).catch((e) => e);
    expect(noCompiler.errors.join('\n')).toMatch(/src\/App\.vue: no Vue compiler/);
  });

  it('injects the import map before any module script', () => {
    const out = rewriteHtml('<html><head><title>t</title></head><body></body></html>', vendor, 'p');
    expect(out.indexOf('importmap')).toBeLessThan(out.indexOf('__bundle.js'));
  });
});
