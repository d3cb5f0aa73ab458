import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import {
  type Agent,
  createAgent,
  createDockerRuntime,
  type DockerRuntime,
  loadConfig as loadAgentConfig,
} from '@preview/pool-agent';
import { TEST_LABEL, TEST_PREVIEW_IMAGE, testDocker } from '@preview/testkit';
import type { Harness } from './harness.ts';

/** The host's CA bundle: sandboxes install from the npm registry through a TLS-intercepting proxy. */
export const HOST_CA = '/etc/ssl/certs/ca-certificates.crt';

/** A router served on a loopback port with a real pool agent on the Docker engine registered to it. */
export interface DockerNode {
  /** The router's own port (the agent registered through it, as `npm start`'s agent does). */
  port: number;
  server: http.Server;
  agent: Agent;
  runtime: DockerRuntime;
  /** Removes the agent's sandboxes, closes the agent and the server (not the harness). */
  close(): Promise<void>;
}

/**
 * Serves `h.router` on 127.0.0.1 and starts a pool agent registered with it over HTTP (join token →
 * node credential, heartbeats), running `image` sandboxes (1 GiB unless `memoryMiB`) with `warmPool`
 * (`WARM_POOL` syntax, e.g. `vite-react-ts=1,express-pg=1`), and waits until its warm pools are full.
 * The harness's own in-process node is forgotten first, so placement only sees this agent.
 */
export async function startDockerNode(
  h: Harness,
  o: {
    name: string;
    warmPool: string;
    /** @default 5 */
    slots?: number;
    /** Memory limit of each sandbox, MiB. @default 1024 */
    memoryMiB?: number;
    /** @default TEST_PREVIEW_IMAGE */
    image?: string;
  },
): Promise<DockerNode> {
  await h.router.nodes.liveness.forget(h.nodeId);
  const server = serve({
    fetch: h.router.app.fetch,
    hostname: '127.0.0.1',
    port: 0,
  }) as unknown as http.Server;
  await new Promise((r) => server.once('listening', r));
  h.router.attach(server);
  const port = (server.address() as AddressInfo).port;
  const config = loadAgentConfig({
    AGENT_PORT: '0',
    NODE_NAME: `${o.name}-${randomBytes(4).toString('hex')}`,
    ROUTER_URL: `http://127.0.0.1:${port}`,
    ROUTER_JOIN_TOKEN: h.joinToken,
    PREVIEW_IMAGE: o.image ?? TEST_PREVIEW_IMAGE,
    PREVIEW_NETWORK: 'preview-net-test',
    NODE_SLOTS: String(o.slots ?? 5),
    WARM_POOL: o.warmPool,
    PREVIEW_NODE_EXTRA_CA_CERTS: HOST_CA,
    READY_TIMEOUT_MS: '240000',
    LOG_LEVEL: 'silent',
  });
  const runtime = await createDockerRuntime({
    docker: testDocker(),
    node: config.NODE_NAME,
    image: config.PREVIEW_IMAGE,
    network: config.PREVIEW_NETWORK,
    uid: config.PREVIEW_UID,
    memoryMiB: o.memoryMiB ?? 1024,
    cpus: 1,
    pidsLimit: 256,
    tmpfsMiB: 64,
    labels: { [TEST_LABEL]: '1' },
  });
  const agent = await createAgent({ config, runtime });
  await agent.pools.settled();
  return {
    port,
    server,
    agent,
    runtime,
    async close() {
      await agent.close({ removeSandboxes: true }).catch(() => {});
      for (const box of await runtime.list().catch(() => [])) await runtime.remove(box.id).catch(() => {});
      await runtime.close().catch(() => {});
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
