/**
 * The runtime host page's script (`preview-bundler-host.js`, loaded by `host.html` on the runtime
 * origin). It runs one BundlerRuntime on this origin for the editor page that framed it, driven over
 * the MessagePort the editor hands it (see host-protocol.ts). The preview it serves lives at
 * `<this origin>/__preview-bundler/<id>/`: another origin than the editor's, so the app cannot read
 * the editor's storage or act with its credentials.
 */
import { PreviewError } from '@preview/tiers';
import { BundlerRuntime } from './bundler-runtime.ts';
import {
  HOST_CONNECT,
  HOST_EVENTS,
  HOST_LOADED,
  type HostAnswer,
  type HostCall,
  type HostMessage,
  toHostError,
} from './host-protocol.ts';

let runtime: BundlerRuntime | undefined;

function serve(port: MessagePort): void {
  let nextAsk = 1;
  const asks = new Map<number, (a: HostAnswer) => void>();
  const post = (m: HostMessage) => port.postMessage(m);
  const askImportMap = () =>
    new Promise<{ imports: Record<string, string> }>((resolve, reject) => {
      const ask = nextAsk++;
      asks.set(ask, (a) => {
        if (a.ok) resolve(a.value);
        else reject(Object.assign(new PreviewError(a.error.code, a.error.message), { name: a.error.name }));
      });
      post({ ask, op: 'importMap' });
    });

  const handle = async (call: HostCall): Promise<unknown> => {
    if (call.op === 'start') {
      if (runtime) throw new PreviewError('host_busy', 'this host already runs a preview');
      const o = call.options;
      runtime = new BundlerRuntime({
        previewId: o.previewId,
        ...(o.vendor ? { vendor: o.vendor } : {}),
        ...(o.importMap ? { importMap: askImportMap } : {}),
        ...(o.bootTimeoutMs ? { bootTimeoutMs: o.bootTimeoutMs } : {}),
      });
      for (const event of HOST_EVENTS)
        runtime.on(event, (payload) =>
          post({ event, payload: payload instanceof Error ? toHostError(payload) : payload }),
        );
      return undefined;
    }
    if (!runtime) throw new PreviewError('host_not_started', 'start the host runtime first');
    switch (call.op) {
      case 'mount':
        return await runtime.mount(call.files);
      case 'install':
        return await runtime.install();
      case 'run':
        return await runtime.run();
      case 'writeFile':
        return await runtime.writeFile(call.path, call.content);
      case 'teardown':
        return await runtime.teardown();
    }
  };

  port.onmessage = (e: MessageEvent<HostCall | HostAnswer>) => {
    const m = e.data;
    if ('ask' in m) {
      asks.get(m.ask)?.(m);
      asks.delete(m.ask);
      return;
    }
    handle(m).then(
      (value) => post({ id: m.id, ok: true, value }),
      (err: unknown) => post({ id: m.id, ok: false, error: toHostError(err) }),
    );
  };
}

// One editor page drives this host: the first port it hands over; later connects are ignored.
let connected = false;
window.addEventListener('message', (e: MessageEvent<{ type?: string }>) => {
  if (connected || e.source !== window.parent || e.data?.type !== HOST_CONNECT || !e.ports[0]) return;
  connected = true;
  serve(e.ports[0]);
});
window.parent.postMessage({ type: HOST_LOADED }, '*');
