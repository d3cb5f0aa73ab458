import type * as SvelteCompilerModule from 'svelte/compiler';

/** The part of `svelte/compiler` the bundler uses (the worker loads it on the first `.svelte` file). */
export type SvelteCompiler = Pick<typeof SvelteCompilerModule, 'compile'>;

/** One compiled Svelte component: its module, or the problems that stopped it. */
export interface CompiledSvelte {
  /** The component's module (JavaScript importing `svelte/internal/client`); its default export is the component. */
  code: string;
  /** `file:line:col: message` of each problem; when not empty, `code` is not usable. */
  errors: string[];
}

/**
 * Compiles a Svelte 5 single-file component the way `@sveltejs/vite-plugin-svelte` does in
 * development: client output, dev checks on, its `<style>` injected by the component itself
 * (`css: 'injected'`), `<script lang="ts">` type annotations stripped by the compiler.
 * A compile error becomes `path:line:column: message` (line 1-based, column 0-based).
 */
export function compileSvelte(svelte: SvelteCompiler, path: string, source: string): CompiledSvelte {
  try {
    const out = svelte.compile(source, { filename: path, generate: 'client', dev: true, css: 'injected' });
    return { code: out.js.code, errors: [] };
  } catch (e) {
    const err = e as { message?: string; start?: { line: number; column: number } };
    const at = err.start ? `${path}:${err.start.line}:${err.start.column}: ` : `${path}: `;
    return { code: '', errors: [at + (err.message ?? String(e)).split('\n')[0]] };
  }
}
