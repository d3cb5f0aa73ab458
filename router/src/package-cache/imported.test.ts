import { describe, expect, it } from 'vitest';
import { importedPackages } from './imported.ts';

describe('importedPackages', () => {
  it("names the packages the page's code imports (not build-tool configs), and the runtime of .vue and .svelte files", () => {
    const got = importedPackages({
      'src/main.ts': "import { mount } from 'svelte'\nimport './app.css'\nimport App from './App.svelte'\n",
      'src/App.svelte':
        "<script>\n  import { fade } from 'svelte/transition';\n  const l = import('@scope/lazy/sub');\n</script>",
      'src/util.js':
        "export { x } from \"other-pkg\";\nimport data from '/abs.json';\nimport u from 'https://x.dev/m.js';\n",
      'vite.config.ts': "import { defineConfig } from 'vite'\n",
      'svelte.config.js': "import { vitePreprocess } from '@sveltejs/vite-plugin-svelte'\n",
      'src/lib/api.ts': "import { client } from 'my-client'\n",
      'node_modules/dep/index.js': "import 'not-mine'",
      'README.md': "import 'not-code'",
      'img.png': { content: Buffer.from("import 'x'").toString('base64'), encoding: 'base64' },
    });
    expect([...got].sort()).toEqual(['@scope/lazy', 'my-client', 'other-pkg', 'svelte']);
  });
});
