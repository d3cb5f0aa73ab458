import type { ProjectFiles } from '@preview/tiers';

const CODE = /\.(?:[cm]?[jt]sx?|vue|svelte)$/;
/** Build-tool configuration run by Node, not the page: `vite.config.ts`, `svelte.config.js`, `eslint.config.mjs`. */
const CONFIG = /(?:^|\/)[^/]+\.config\.[cm]?[jt]s$/;
/** `import … from 'x'`, `export … from 'x'`, `import 'x'`, `import('x')`. */
const IMPORT = /\b(?:from|import)\s*\(?\s*(["'])([^"'\n]+)\1/g;

/**
 * The npm packages a project's own code imports (bare specifiers of its `.js/.ts/.jsx/.tsx/.vue/
 * .svelte` files, by package name: `@scope/pkg/sub` → `@scope/pkg`), plus the runtime a component
 * format's compiled output imports (`vue` for `.vue` files, `svelte` for `.svelte` ones). A regular
 * expression reads them, so an import inside a comment or string counts too (a package too many in
 * an import map costs nothing). Files under `node_modules/` and build-tool configuration
 * (`*.config.js/ts`: `vite.config.ts` imports `@sveltejs/vite-plugin-svelte`, which needs Node) are
 * not the page's code.
 */
export function importedPackages(files: ProjectFiles): Set<string> {
  const names = new Set<string>();
  for (const [path, file] of Object.entries(files)) {
    if (!CODE.test(path) || CONFIG.test(path) || /(?:^|\/)node_modules\//.test(path)) continue;
    if (path.endsWith('.vue')) names.add('vue');
    if (path.endsWith('.svelte')) names.add('svelte');
    const text = typeof file === 'string' ? file : Buffer.from(file.content, 'base64').toString('utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[2] as string;
      if (/^(?:\.{1,2}\/|\/|[a-z][a-z0-9+.-]*:)/i.test(spec)) continue; // relative, absolute, a URL
      const parts = spec.split('/');
      names.add(spec.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string));
    }
  }
  return names;
}
