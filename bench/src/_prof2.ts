import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startBundlerRouter } from '@preview/browser-runtime/testkit/bundler-router';
import { launchChromium } from '@preview/testkit';

const dir = '/tmp/cv';
const root = join(dir, 'package', 'template-svelte-ts');
const files: any = {};
const walk = (rel: string) => {
  for (const e of readdirSync(join(root, rel))) {
    const p = rel ? `${rel}/${e}` : e;
    if (statSync(join(root, p)).isDirectory()) walk(p);
    else {
      const b = readFileSync(join(root, p));
      const t = b.toString('utf8');
      files[p] = Buffer.from(t).equals(b) ? t : { content: b.toString('base64'), encoding: 'base64' };
    }
  }
};
walk('');
const r = await startBundlerRouter();
const chrome = await launchChromium();
const w: any = globalThis;
for (let run = 0; run < 1; run++) {
  const page = await chrome.context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') console.log('console', m.text().slice(0, 200));
  });
  await page.goto(`${r.runtimeOrigin}/__test/editor.html`);
  await page.waitForFunction(() => typeof (window as any).__editor === 'object');
  await page.evaluate(([a, t]) => (window as any).__editor.connect(a, t), [r.apiUrl, r.jwt]);
  const ms = await page.evaluate((f) => (window as any).__editor.timeFirstRender(f, 'Count is 0'), files).catch(async (e) => { console.log('ERR', e.message.slice(0,300)); console.log(await page.evaluate(() => (window as any).__editor.statuses())); return -1; });
  const tl = await page.evaluate(() => (window as any).__editor.timeline());
  const t0 = tl[0].t;
  console.log(
    'run',
    run,
    'first render',
    ms.toFixed(0),
    tl.map((x: any) => `${(x.t - t0).toFixed(0)} ${x.what}`).join(' | '),
  );
  const res = await page.evaluate(() =>
    performance
      .getEntriesByType('resource')
      .map(
        (e: any) =>
          `${e.name.replace(/^https?:\/\/[^/]+/, '')} ${e.startTime.toFixed(0)}+${e.duration.toFixed(0)}`,
      ),
  );
  console.log(res.slice(-25).join('\n'));
  const fr = await page.evaluate(() => {
    const w = (document.querySelector('#host iframe') as any).contentWindow;
    return w.performance
      .getEntriesByType('resource')
      .map(
        (e: any) =>
          `${e.name.replace(/^https?:\/\/[^/]+/, '')} ${e.startTime.toFixed(0)}+${e.duration.toFixed(0)}`,
      )
      .concat(['nav ' + JSON.stringify(w.performance.getEntriesByType('navigation')[0]?.duration)]);
  });
  console.log('frame:', fr.join('\n'));
  if (run === 2) {
    const app = files['src/App.tsx'];
    for (let i = 1; i <= 5; i++) {
      const c = app.replace('Count is {count}', `Edit ${i} count {count}`);
      const e = await page.evaluate(
        ([c, t]) => (window as any).__editor.timeEdit('src/App.tsx', c, t),
        [c, `Edit ${i} count 0`],
      );
      console.log('edit', e.toFixed(1));
    }
    const tl2 = await page.evaluate(() => (window as any).__editor.timeline());
    console.log(
      tl2
        .slice(-5)
        .map((x: any) => x.what)
        .join('\n'),
    );
  }
}
await chrome.close();
await r.close();
