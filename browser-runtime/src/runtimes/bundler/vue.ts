import type * as CompilerSfc from '@vue/compiler-sfc';

/**
 * The part of `@vue/compiler-sfc` the bundler uses (the worker passes the package's browser build;
 * Node tests pass the package itself).
 */
export type VueSfcCompiler = Pick<
  typeof CompilerSfc,
  'parse' | 'compileScript' | 'compileTemplate' | 'compileStyle'
>;

/** One compiled single-file component: its module and the CSS of its `<style>` blocks. */
export interface CompiledSfc {
  /** The component's module; TypeScript when a script block is `lang="ts"`. */
  code: string;
  loader: 'js' | 'ts';
  /** Each `<style>` block as plain CSS (scoped ones rewritten to `[data-v-<id>]`). */
  styles: string[];
  /** `file:line:col: message` of each problem; when not empty, `code` is not usable. */
  errors: string[];
}

/** A short stable id of a file path (the `data-v-<id>` of scoped styles). */
function hashId(path: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < path.length; i++) h = Math.imul(h ^ path.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

const located = (path: string, e: unknown): string => {
  const err = e as { message?: string; loc?: { start?: { line: number; column: number } } };
  const at = err.loc?.start ? `${path}:${err.loc.start.line}:${err.loc.start.column}: ` : `${path}: `;
  return at + (err.message ?? String(e));
};

/**
 * Compiles a Vue single-file component the way `@vitejs/plugin-vue` does in development:
 * `<script setup>` with the template inlined (`compileScript`, `inlineTemplate`), or a plain
 * `<script>` plus `compileTemplate` as its render function; asset URLs in the template become
 * imports (`transformAssetUrls`, relative paths only); `<style scoped>` gets the component's
 * `data-v-<id>` (`compileStyle`). The module's default export is the component.
 */
export function compileSfc(sfc: VueSfcCompiler, path: string, source: string): CompiledSfc {
  const { descriptor, errors } = sfc.parse(source, { filename: path });
  if (errors.length)
    return { code: '', loader: 'js', styles: [], errors: errors.map((e) => located(path, e)) };
  const id = hashId(path);
  const scoped = descriptor.styles.some((s) => s.scoped);
  const out: string[] = [];
  let lang = 'js';
  let inlined = false;
  let bindings: CompilerSfc.BindingMetadata | undefined;
  try {
    if (descriptor.script || descriptor.scriptSetup) {
      const script = sfc.compileScript(descriptor, {
        id,
        inlineTemplate: true,
        genDefaultAs: '__sfc__',
        templateOptions: { compilerOptions: { scopeId: scoped ? `data-v-${id}` : undefined } },
      });
      out.push(script.content);
      lang = script.lang ?? descriptor.scriptSetup?.lang ?? descriptor.script?.lang ?? 'js';
      inlined = Boolean(descriptor.scriptSetup);
      bindings = script.bindings;
    } else out.push('const __sfc__ = {};');
    if (!inlined && descriptor.template) {
      const t = sfc.compileTemplate({
        source: descriptor.template.content,
        filename: path,
        id,
        scoped,
        compilerOptions: { bindingMetadata: bindings, scopeId: scoped ? `data-v-${id}` : undefined },
      });
      if (t.errors.length)
        return { code: '', loader: 'js', styles: [], errors: t.errors.map((e) => located(path, e)) };
      out.push(
        t.code.replace(/\nexport function (render|ssrRender)\(/, '\nfunction $1('),
        '__sfc__.render = render;',
      );
    }
  } catch (e) {
    return { code: '', loader: 'js', styles: [], errors: [located(path, e)] };
  }
  if (scoped) out.push(`__sfc__.__scopeId = ${JSON.stringify(`data-v-${id}`)};`);
  out.push(`__sfc__.__file = ${JSON.stringify(path)};`, 'export default __sfc__;');
  const styles: string[] = [];
  for (const style of descriptor.styles) {
    const r = sfc.compileStyle({
      source: style.content,
      filename: path,
      id: `data-v-${id}`,
      scoped: style.scoped,
    });
    if (r.errors.length)
      return { code: '', loader: 'js', styles: [], errors: r.errors.map((e) => located(path, e)) };
    styles.push(r.code);
  }
  return { code: out.join('\n'), loader: lang === 'ts' || lang === 'tsx' ? 'ts' : 'js', styles, errors: [] };
}
